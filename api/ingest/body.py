"""Request bodies, read within JACSPEC_MAX_BODY_BYTES (counted while streaming, not only from Content-Length).

FastAPI's own body path runs the stdlib ``json.loads`` and then validates the Python objects. Here the body is
parsed and validated in one pass by pydantic-core (``Model.model_validate_json``), in strict mode: a number must
be a JSON number, an integer an integral one — no booleans, no numeric strings. A large body is validated in a
worker thread, so that the event loop goes on serving other requests meanwhile.
"""

from __future__ import annotations

import io
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from anyio import fail_after, to_thread
from fastapi import Request
from pydantic import BaseModel, ValidationError

from api.deps import SettingsDep, get_settings
from api.echo import echo
from api.problems import ProblemError, from_validation
from api.settings import Settings

Model = TypeVar("Model", bound=BaseModel)

Raw = bytes | bytearray
"""A request body as read (``read_body`` gives bytes) or as a test or a multipart part gives it."""

INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are parsed on the event loop; larger ones in a worker thread."""


def json_body(model: type[Model]) -> Callable[[Request, Settings], Awaitable[Model]]:
    """A dependency that reads the request body and validates it as ``model``."""

    async def read(request: Request, settings: SettingsDep) -> Model:
        return await read_json(request, model, settings.max_body_bytes)

    return read


async def read_json(request: Request, model: type[Model], limit: int, accepted: str = "application/json") -> Model:
    """The body, which must be JSON, read within ``limit`` bytes and validated as ``model``.

    ``accepted`` names, for the 415 message, every media type the route takes.
    """
    require_json(request, accepted)
    return await validate_json(request, model, await read_body(request, limit))


def require_json(request: Request, accepted: str = "application/json") -> None:
    """415 unless the body is JSON (``application/json`` or ``…+json``); ``accepted`` names what the route takes."""
    media = media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise ProblemError(
            415,
            "Unsupported Media Type",
            f"the body must be {accepted}; Content-Type was {echo(media) if media else 'none'}",
        )


async def validate_json(request: Request, model: type[Model], raw: Raw, where: str = "") -> Model:
    """``model`` from JSON bytes (in a worker thread when large); a 4xx names the field, under ``where``."""
    started = time.perf_counter()
    if len(raw) <= INLINE_PARSE_BYTES:
        outcome = _validate(model, raw, where)
    else:
        # A large body's problem is built in the thread too: pydantic's errors of a body of a million bad values
        # take seconds to list, which must not stall the event loop.
        outcome = await to_thread.run_sync(_validate, model, raw, where)
    request.state.parse_ms = getattr(request.state, "parse_ms", 0.0) + (time.perf_counter() - started) * 1e3
    if isinstance(outcome, ProblemError):
        raise outcome
    return outcome


def validated(model: type[Model], raw: Raw, where: str = "") -> Model:
    """``model`` from ``raw`` in strict mode, at once (a compute worker validates a large body with it); a
    ProblemError naming the fields at fault, under ``where``, otherwise."""
    outcome = _validate(model, raw, where)
    if isinstance(outcome, ProblemError):
        raise outcome
    return outcome


def _validate(model: type[Model], raw: Raw, where: str) -> Model | ProblemError:
    """``model`` from ``raw`` in strict mode, or the problem naming the fields at fault under ``where``."""
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        return from_validation(exc, raw, where)


def media_type(request: Request) -> str:
    """The request's media type, lower-case, without parameters."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def declared_length(request: Request) -> int | None:
    """The body's length as its Content-Length declares it; None when absent or not a number."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isascii() and declared.isdigit() else None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, within ``limit`` bytes (JACSPEC_MAX_BODY_BYTES), in one buffer grown as the chunks arrive;
    413 as soon as they exceed it (or the Content-Length says they will); 408, closing the connection, when it has
    not arrived whole within JACSPEC_BODY_TIMEOUT seconds (a client trickling it).

    Each chunk is appended while it is still in cache and then freed, rather than all chunks held and joined (twice
    the body in memory). The buffer is an ``io.BytesIO``, whose ``getvalue()`` hands over its bytes without a copy:
    pydantic-core copies a bytearray before parsing it (a third body in memory) but reads bytes in place. The
    chunks are taken from the ASGI ``receive`` itself, without Starlette's stream
    generator. A client gone before the end gets a 400 (which nobody reads, but the logs and metrics do), not the
    traceback and 500 of Starlette's ``ClientDisconnect``.
    """
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    timeout = get_settings(request).body_timeout
    try:
        with fail_after(timeout):
            return await _receive_all(request, limit)
    except TimeoutError:
        raise ProblemError(
            408,
            "Request Timeout",
            f"the body did not arrive whole within {timeout:g} s (JACSPEC_BODY_TIMEOUT)",
            headers={"Connection": "close"},
        ) from None


async def _receive_all(request: Request, limit: int) -> bytes:
    """The body's chunks appended to one buffer as they arrive; 413 past ``limit``, 400 if the client left."""
    buffer = io.BytesIO()
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ProblemError(400, "Bad Request", "the client closed the connection before the body was complete")
        buffer.write(message.get("body", b""))
        if buffer.tell() > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return buffer.getvalue()


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, "Content Too Large", f"the body exceeds {limit} bytes (JACSPEC_MAX_BODY_BYTES)")
