"""Request bodies, read within JACSPEC_MAX_BODY_BYTES (counted while streaming, not only from Content-Length).

FastAPI's own body path runs the stdlib ``json.loads`` and then validates the Python objects. Here a small
body is parsed and validated in one pass in Rust (``Model.model_validate_json``), in strict mode: a number must
be a JSON number, an integer an integral one — no booleans, no numeric strings. A large one is parsed in a
worker thread — when the route allows it, its numeric arrays straight into numpy buffers (``api.jsonarrays``)
or its large ``b64`` strings decoded straight from the bytes (``api.jsonb64``), the rest by pydantic-core — and
the Python objects are validated in strict mode (see ``_validate_large``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pydantic_core
from anyio import to_thread
from fastapi import Request
from pydantic import BaseModel, ValidationError

from api import jsonarrays, jsonb64
from api.problems import ProblemError, from_validation

Model = TypeVar("Model", bound=BaseModel)

Raw = bytes | bytearray
"""A request body as read (``read_body`` gives a bytearray) or as a test or a multipart part gives it."""

INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are parsed on the event loop; larger ones in a worker thread."""

LIFT_ABOVE = 1024 * 1024
"""Bodies above this size have their numeric arrays parsed by ``api.jsonarrays``, when the route allows it."""

COMMA_SHARE = 64
"""A body with a comma in every this many bytes is mostly numbers; one with fewer is mostly strings (``b64``),
which ``api.jsonb64`` decodes in place, or pydantic-core makes into Python strings faster than simdjson."""

SAMPLES, WINDOW = 1024, 64
"""How ``_comma_share`` samples a body: 1024 windows of 64 bytes at most."""


def json_body(model: type[Model]) -> Callable[[Request], Awaitable[Model]]:
    """A dependency that reads the request body and validates it as ``model``."""

    async def read(request: Request) -> Model:
        return await read_json(request, model)

    return read


async def read_json(
    request: Request, model: type[Model], accepted: str = "application/json", lift_arrays: bool = False
) -> Model:
    """The body, which must be JSON, read within the size limit and validated as ``model``.

    ``accepted`` names, for the 415 message, every media type the route takes. ``lift_arrays``: ``model`` takes
    ``ParsedArray`` wherever its numeric arrays of ``jsonarrays.LIFT_MIN`` numbers or more may be, and
    ``DecodedB64`` wherever its ``b64`` strings of ``jsonb64.LIFT_MIN`` characters or more may be.
    """
    media = media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise ProblemError(
            415, "Unsupported Media Type", f"the body must be {accepted}; Content-Type was {media or 'none'}"
        )
    return await validate_json(request, model, await read_body(request), lift_arrays=lift_arrays)


async def validate_json(
    request: Request, model: type[Model], raw: Raw, where: str = "", lift_arrays: bool = False
) -> Model:
    """``model`` from JSON bytes (in a worker thread when large); a 4xx names the field, under ``where``."""
    started = time.perf_counter()
    if len(raw) <= INLINE_PARSE_BYTES:
        try:
            body = model.model_validate_json(raw, strict=True)
        except ValidationError as exc:
            raise from_validation(exc, raw, where) from None
    else:
        # A large body's problem is built in the thread too: pydantic's errors of a body of a million bad values
        # take seconds to list, which must not stall the event loop.
        outcome = await to_thread.run_sync(_validate_large, model, raw, lift_arrays, where)
        if isinstance(outcome, ProblemError):
            raise outcome
        body = outcome
    request.state.parse_ms = getattr(request.state, "parse_ms", 0.0) + (time.perf_counter() - started) * 1e3
    return body


def _validate_large(model: type[Model], raw: Raw, lift_arrays: bool, where: str = "") -> Model | ProblemError:
    """``model`` from large JSON bytes: parsed to Python objects first, then validated in strict mode.

    pydantic's one-pass JSON validation converts every tagged union's input to Python objects to choose its
    branch, which for a weight is the whole weight twice over. Strict validation of the parsed objects accepts
    what strict validation of the text accepts, with the same values; anything else takes that road, whose
    errors are the ones answered, as a problem naming the fields under ``where``.
    """
    document = _parsed(raw, lift_arrays)
    if document is not None:
        try:
            return model.model_validate(document, strict=True)
        except ValidationError:
            pass
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        return from_validation(exc, raw, where)


def _parsed(raw: Raw, lift_arrays: bool) -> object | None:
    """The document as Python objects, ``None`` when the text is not JSON (or when the lift gives up).

    When allowed: by ``jsonarrays.lift`` if the text is mostly numbers (about one comma in ``COMMA_SHARE`` bytes
    or more), else with its large ``b64`` strings decoded by ``jsonb64.lift`` if it has any; otherwise, or when
    ``jsonb64`` cannot vouch for the text, by pydantic-core.
    """
    if lift_arrays and len(raw) > LIFT_ABOVE:
        if _comma_share(raw) * COMMA_SHARE >= 1:
            return jsonarrays.lift(raw)
        lifted = jsonb64.lift(raw)
        if lifted is not None:
            return lifted
    try:
        document: object = pydantic_core.from_json(raw)
    except ValueError:
        return None
    return document


def _comma_share(raw: Raw) -> float:
    """The share of commas among the bytes, estimated from ``SAMPLES`` windows of ``WINDOW`` bytes spread evenly
    over the body (each window spans several numbers, so no period of their formatting aliases with the spacing).

    A full count of a large body costs 1 ms per MiB, and so did reading every 97th byte, which touches every
    cache line: 3.7 ms of a 22 MiB ``b64`` body's parse in the server.
    """
    step = max(WINDOW, len(raw) // SAMPLES)
    sample = b"".join([raw[start : start + WINDOW] for start in range(0, len(raw), step)])
    return sample.count(b",") / max(1, len(sample))


def media_type(request: Request) -> str:
    """The request's media type, lower-case, without parameters."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def declared_length(request: Request) -> int | None:
    """The body's length as its Content-Length declares it; None when absent or not a number."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


async def read_body(request: Request) -> bytearray:
    """The whole body, within JACSPEC_MAX_BODY_BYTES, in one bytearray grown as the chunks arrive; 413 as soon as
    they exceed it (or the Content-Length says they will).

    Joining a list of chunks holds every chunk and then the joined copy: twice the body in freshly touched memory.
    A bytearray copies each chunk while it is still in cache, and the chunk's memory is freed at once and reused
    for the next one. In the server a 16 MiB upload's
    chunks were gathered in a median of 93 ms by joining and 62 ms by ``+=`` with glibc's default thresholds.
    The chunks are taken from the ASGI ``receive`` itself: through Starlette's ``request.stream()`` and a
    generator of ours on top, the same upload (about 80 chunks) took 13–18 ms to read, directly 10–14 ms.
    A client gone before the end gets a 400 (which nobody reads, but the logs and metrics do), not the
    traceback and 500 of Starlette's ``ClientDisconnect``.
    """
    limit = request.app.state.settings.max_body_bytes
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    buffer = bytearray()
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ProblemError(400, "Bad Request", "the client closed the connection before the body was complete")
        buffer += message.get("body", b"")
        if len(buffer) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return buffer


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
