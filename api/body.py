"""Request bodies, read within JACSPEC_MAX_BODY_BYTES (counted while streaming, not only from Content-Length).

JSON is parsed by pydantic-core straight from the raw bytes: FastAPI's own body path runs the stdlib
``json.loads`` and then validates the Python objects; ``Model.model_validate_json`` parses and validates in one
pass in Rust, in a worker thread for large bodies. Multipart bodies go through Starlette's streaming parser.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from anyio import to_thread
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from api.problems import ProblemError, from_validation

Model = TypeVar("Model", bound=BaseModel)

INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are parsed on the event loop; larger ones in a worker thread."""


def json_body(model: type[Model]) -> Callable[[Request], Awaitable[Model]]:
    """A dependency that reads the request body and validates it as ``model``."""

    async def read(request: Request) -> Model:
        return await read_json(request, model)

    return read


async def read_json(request: Request, model: type[Model], accepted: str = "application/json") -> Model:
    """The body, which must be JSON, read within the size limit and validated as ``model``.

    ``accepted`` names, for the 415 message, every media type the route takes.
    """
    media = media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise ProblemError(
            415, "Unsupported Media Type", f"the body must be {accepted}; Content-Type was {media or 'none'}"
        )
    raw = b"".join([chunk async for chunk in limited_stream(request)])
    return await validate_json(request, model, raw)


async def validate_json(request: Request, model: type[Model], raw: bytes, where: str = "") -> Model:
    """``model`` from JSON bytes (in a worker thread when large); a 4xx names the field, under ``where``."""
    started = time.perf_counter()
    try:
        if len(raw) <= INLINE_PARSE_BYTES:
            body = model.model_validate_json(raw)
        else:
            body = await to_thread.run_sync(model.model_validate_json, raw)
    except ValidationError as exc:
        raise from_validation(exc, raw, where) from None
    request.state.parse_ms = getattr(request.state, "parse_ms", 0.0) + (time.perf_counter() - started) * 1e3
    return body


def media_type(request: Request) -> str:
    """The request's media type, lower-case, without parameters."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def limited_stream(request: Request) -> AsyncGenerator[bytes, None]:
    """The body's chunks; 413 as soon as they exceed JACSPEC_MAX_BODY_BYTES (or Content-Length says they will)."""
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        yield chunk


async def read_form(request: Request) -> FormData:
    """A multipart/form-data body, parsed by Starlette's streaming parser within the size limit."""
    limit = request.app.state.settings.max_body_bytes
    parser = MultiPartParser(request.headers, limited_stream(request), max_files=1, max_fields=1, max_part_size=limit)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise ProblemError(400, "Bad Request", f"the multipart body could not be read: {exc.message}") from None


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, "Content Too Large", f"the body exceeds {limit} bytes (JACSPEC_MAX_BODY_BYTES)")


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON body, with the model's examples."""
    extra = model.model_config.get("json_schema_extra")
    examples: list[Any] = list(extra.get("examples", [])) if isinstance(extra, dict) else []  # type: ignore[arg-type]
    content: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    if examples:
        content["examples"] = {f"example {i + 1}": {"value": example} for i, example in enumerate(examples)}
    return {"requestBody": {"required": True, "content": {"application/json": content}}}
