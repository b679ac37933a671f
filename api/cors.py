"""CORS, when JACSPEC_CORS_ORIGINS is set: Starlette's middleware, with its refusals made problem+json.

A browser's preflight for an origin, method or header that is not allowed gets Starlette's 400 ``Disallowed
CORS origin`` as text/plain; here it is the same 400 as RFC 9457 problem+json, like every other error.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from api import request_id
from api.problems import MEDIA_TYPE
from jacspec.models import Problem

KEY_HEADERS = ["Authorization", "X-API-Key"]
EXPOSED = [request_id.HEADER, "Retry-After"]


class ProblemCORSMiddleware(CORSMiddleware):
    """``CORSMiddleware`` whose preflight refusals are problem+json."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k not in {"content-length", "content-type"}}
        problem = Problem(
            title="Bad Request",
            status=response.status_code,
            detail=f"{bytes(response.body).decode()}: this server's JACSPEC_CORS_ORIGINS does not allow the request",
            request_id=request_id.request_id.get(),
        )
        return JSONResponse(
            problem.model_dump(exclude_none=True), response.status_code, headers=headers, media_type=MEDIA_TYPE
        )


def install(app: FastAPI, origins: list[str]) -> None:
    """Allow ``origins`` to call with the key headers and read the request id and Retry-After."""
    app.add_middleware(
        ProblemCORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=[*KEY_HEADERS, "Content-Type", request_id.HEADER],
        expose_headers=EXPOSED,
    )
