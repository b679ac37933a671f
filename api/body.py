"""JSON request bodies read with a size limit and parsed by pydantic-core straight from the raw bytes.

FastAPI's own body path runs the stdlib ``json.loads`` and then validates the Python objects; here
``Model.model_validate_json`` parses and validates in one pass in Rust, in a worker thread for large bodies.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from anyio import to_thread
from fastapi import Request
from pydantic import BaseModel, ValidationError

from api.problems import ProblemError, from_validation
from api.settings import Settings

Model = TypeVar("Model", bound=BaseModel)

INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are parsed on the event loop; larger ones in a worker thread."""


def json_body(model: type[Model]) -> Callable[[Request], Awaitable[Model]]:
    """A dependency that reads the request body and validates it as ``model``."""

    async def read(request: Request) -> Model:
        settings: Settings = request.app.state.settings
        _require_json(request.headers.get("content-type", ""))
        raw = await _read_limited(request, settings.max_body_bytes)
        started = time.perf_counter()
        try:
            if len(raw) <= INLINE_PARSE_BYTES:
                body = model.model_validate_json(raw)
            else:
                body = await to_thread.run_sync(model.model_validate_json, raw)
        except ValidationError as exc:
            raise from_validation(exc, raw) from None
        request.state.parse_ms = (time.perf_counter() - started) * 1e3
        return body

    return read


def _require_json(content_type: str) -> None:
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        shown = media or "none"
        raise ProblemError(
            415, "Unsupported Media Type", f"the body must be application/json; Content-Type was {shown}"
        )


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


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
