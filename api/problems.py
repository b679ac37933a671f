"""RFC 9457 problem+json for every error, with JSON pointers to the fields at fault; nothing echoes the body.

What a problem does repeat of the request — an unknown key in a pointer, a union tag — goes through
:func:`api.echo.clean`: at most 64 characters, no markup, no control characters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic_core import from_json
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import request_id
from api.echo import clean, echo
from jacspec.models import ActivationName, FieldError, Problem
from jacspec.models.graph import NODE_TAGS
from service.errors import InvalidInputError

logger = logging.getLogger("jacspec")

MEDIA_TYPE = "application/problem+json"
INVALID = "urn:jacspec:problem:invalid-request"
MAX_MESSAGE = 400
MAX_ERRORS = 20
"""A problem lists at most this many field errors (a body of a million NaNs is refused in a few lines)."""


class ProblemError(Exception):
    """An error answered with a problem+json body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str = "about:blank",
        errors: Sequence[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(
            type=type_, title=title, status=status, detail=detail, errors=list(errors) if errors else None
        )
        self.headers = headers

    def __reduce__(self) -> tuple[Any, tuple[Problem, dict[str, str] | None]]:
        """Pickled as its problem and headers (a compute worker's refusal reaches the server whole)."""
        return _restored, (self.problem, self.headers)


def _restored(problem: Problem, headers: dict[str, str] | None) -> ProblemError:
    """The ProblemError that ``problem`` and ``headers`` were taken from."""
    error = ProblemError(problem.status, problem.title, problem.detail or "", headers=headers)
    error.problem = problem
    return error


def invalid(errors: Sequence[FieldError], status: int = 422, total: int | None = None) -> ProblemError:
    """A 4xx naming each offending field; ``detail`` repeats the first.

    ``total`` is the number of errors found when ``errors`` holds only the first of them.
    """
    first = errors[0]
    count = len(errors) if total is None else total
    detail = f"{first.pointer or '/'}: {first.detail}"
    if count > 1:
        detail += f" (and {count - 1} more)"
    return ProblemError(status, "Invalid request", detail, type_=INVALID, errors=errors[:MAX_ERRORS])


UNION_TAGS = frozenset(
    {
        "tensor",
        "list",
        "flat",
        "nested",
        "name",
        "object",
        "dense",
        "conv2d",
        "reference",
        "int",
        "word",
        *NODE_TAGS,
        *get_args(ActivationName),
    }
)
"""The tags the contract models' unions put into pydantic error locations (an activation's name among them)."""

FIELD_TAGS = frozenset({"name"})
"""Union tags that are also field names of the contract models (a Tensor's or an activation object's ``name``).

Every other tag in a location is always a tag: no field is named like it, and an unknown key named like it can
only be the last step of an ``extra_forbidden`` error (pydantic does not look inside an unknown key's value).
"""


def pointer(location: Sequence[str | int], document: Any, extra: bool = False) -> str:
    """The RFC 6901 pointer for a pydantic error location, walking the parsed body.

    Union tags are dropped, except the last step of an ``extra`` (``extra_forbidden``) error, which is the unknown
    key itself, and a tag that is also a field name where the document holds an object with that key.
    """
    parts: list[str | int] = []
    node = document
    last = len(location) - 1
    for i, step in enumerate(location):
        tag = isinstance(step, str) and step in UNION_TAGS and not (extra and i == last)
        if tag and (step not in FIELD_TAGS or not (isinstance(node, dict) and step in node)):
            continue
        parts.append(step)
        node = _child(node, step)
    return _location_pointer(parts)


def _location_pointer(location: Sequence[str | int]) -> str:
    """The RFC 6901 pointer of a path: each step escaped and prefixed with "/". A step is the client's text where
    it is an unknown key: cleaned (api.echo.clean), so that a megabyte of markup comes back as 64 inert characters."""
    return "".join("/" + _escape(clean(str(step))) for step in location)


def _child(node: Any, step: str | int) -> Any:
    if isinstance(node, dict) and isinstance(step, str):
        return node.get(step)
    if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
        return node[step]
    return None


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def from_validation(exc: ValidationError, raw: bytes | bytearray, where: str = "") -> ProblemError:
    """422 for a body that fails the contract (400 for one that is not JSON at all); pointers start at ``where``.

    Only the first MAX_ERRORS errors are turned into pointers, and the body is parsed again only when one of
    them needs it: a body of millions of bad values is refused in milliseconds, not minutes, of the event loop.
    """
    details = exc.errors(include_url=False, include_input=False)[:MAX_ERRORS]
    if any(d["type"] == "json_invalid" for d in details):
        message = details[0]["msg"].removeprefix("Invalid JSON: ")[:MAX_MESSAGE]
        return invalid([FieldError(pointer=where, detail=f"the body is not valid JSON ({message})")], status=400)
    document = _document(raw) if any(step in FIELD_TAGS for d in details for step in d["loc"]) else None
    errors = [
        FieldError(
            pointer=where + pointer(d["loc"], document, extra=d["type"] == "extra_forbidden"),
            detail=_detail(d),
        )
        for d in details
    ]
    return invalid(errors, total=exc.error_count())


def _detail(error: Any) -> str:
    """The message of one pydantic error; where pydantic's message repeats the client's text (a union tag), it is
    rebuilt with that text cleaned (api.echo)."""
    context = error.get("ctx") or {}
    if error["type"] == "union_tag_invalid":
        tag = echo(str(context.get("tag", "")))
        return f"tag {tag} (at {context.get('discriminator', '')}) is not one of {context.get('expected_tags', '')}"
    return _message(error["msg"])


def _document(raw: bytes | bytearray) -> Any:
    try:
        return from_json(raw)
    except ValueError:
        return None


def _message(text: str) -> str:
    return text.removeprefix("Value error, ")[:MAX_MESSAGE]


def from_invalid_input(exc: InvalidInputError) -> ProblemError:
    """422 for input the numerics refused (shapes that do not chain, NaN, ...)."""
    return invalid([FieldError(pointer=_location_pointer(exc.location), detail=exc.message[:MAX_MESSAGE])])


def problem_response(problem: Problem, request: Request, headers: dict[str, str] | None = None) -> JSONResponse:
    """The problem+json response, with the request's id as the ``request_id`` extension member."""
    body = problem.model_copy(update={"request_id": request_id.of(request)})
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=problem.status, media_type=MEDIA_TYPE, headers=headers
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.problem, request, exc.headers)


async def _on_invalid_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInputError)
    return problem_response(from_invalid_input(exc).problem, request)


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [FieldError(pointer=_location_pointer(d["loc"]), detail=_detail(d)) for d in exc.errors()[:MAX_ERRORS]]
    return problem_response(invalid(errors).problem, request)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "HTTP error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    problem = Problem(title=title, status=exc.status_code, detail=detail)
    return problem_response(problem, request, dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """500, with ``Connection: close`` (the server closes the connection after an unhandled error, so it says so).
    Starlette calls this outside every middleware, so the request id header is set here."""
    rid = request_id.of(request)
    logger.exception(
        "unhandled error on %s %s", request.method, request.url.path, exc_info=exc, extra={"request_id": rid}
    )
    problem = Problem(title="Internal Server Error", status=500, detail="an unexpected error; it has been logged")
    return problem_response(problem, request, {request_id.HEADER: rid, "Connection": "close"})


def install(app: FastAPI) -> None:
    """Route every error through problem+json."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(InvalidInputError, _on_invalid_input)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)


PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    descriptions = {
        400: "The body is not JSON.",
        401: "An API key is required (`Authorization: Bearer <key>` or `X-API-Key: <key>`) and none valid was sent.",
        404: "No such resource of this API key (another key's id answers the same).",
        409: "The resource is not in a state that allows this (a job not yet succeeded, or already finished).",
        408: "The body did not arrive whole within `JACSPEC_BODY_TIMEOUT` seconds; the connection is closed.",
        413: "The body, the network or its estimated work is larger than this server accepts, or the analysis "
        "needed more time (`urn:jacspec:problem:deadline`) or memory (`urn:jacspec:problem:memory`) than it allows.",
        415: "The body is not application/json.",
        422: "The body (or a query or path parameter) does not satisfy the contract; `errors` points at each "
        "offending field.",
        429: "This API key already has `JACSPEC_MAX_PENDING_JOBS` jobs queued or running; retry after "
        "`Retry-After` seconds.",
        503: "Every compute worker stayed busy (or the queue for them is full), the bodies in flight fill "
        "`JACSPEC_BODY_BUDGET_BYTES`, or the worker computing the analysis died; retry after `Retry-After` seconds.",
    }
    headers = {
        401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
        429: {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
        503: {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
    }
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response = {"description": descriptions[status], "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}}
        if status in headers:
            response["headers"] = headers[status]
        responses[status] = response
    return responses
