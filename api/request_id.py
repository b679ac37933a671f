"""Request ids: every response carries ``X-Request-ID``, every log line can name it, one access line per request.

A valid incoming ``X-Request-ID`` (1–128 characters of ``A-Z a-z 0-9 . _ -``) is kept, anything else is replaced
by a fresh uuid4 hex. The id lives in a context variable while the request is handled, so that
``RequestIdFilter`` can put it on every log record as ``request_id``, and in ``scope["state"]`` so that the
error handler outside this middleware (Starlette's ``ServerErrorMiddleware``, for 500) can still name it.

The middleware is plain ASGI, not ``BaseHTTPMiddleware``, so streamed responses stream. The access line
(``jacspec.access``) names the method, path, status, duration and id, never a header, query string or body:
API keys travel in headers and are never logged.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
VALID = re.compile(r"[A-Za-z0-9._-]{1,128}")
NONE = "-"
"""The ``request_id`` of log records made outside any request."""

request_id: ContextVar[str] = ContextVar("jacspec_request_id", default=NONE)
access_logger = logging.getLogger("jacspec.access")


def incoming_or_new(value: str | None) -> str:
    """``value`` if it is a valid request id, else a fresh uuid4 hex."""
    if value is not None and VALID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def of(request: Request) -> str:
    """The id of ``request`` (also outside the middleware, e.g. in the 500 handler); ``-`` if it has none."""
    return str(getattr(request.state, "request_id", NONE))


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` to the current request's id (``-`` outside a request) unless already set."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class RequestIdMiddleware:
    """Pure ASGI middleware: assigns the id, adds the response header, logs one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_or_new(Headers(scope=scope).get(HEADER))
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _log_access(scope, status, (time.perf_counter() - started) * 1e3, rid)
            request_id.reset(token)


def _log_access(scope: Scope, status: int, duration_ms: float, rid: str) -> None:
    """``POST /v1/analyses 200 12.3 ms``, with each part also a field of the record (for structured logs)."""
    path = _printable(scope["path"])
    access_logger.info(
        "%s %s %d %.1f ms",
        scope["method"],
        path,
        status,
        duration_ms,
        extra={
            "request_id": rid,
            "method": scope["method"],
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 3),
        },
    )


def _printable(path: str) -> str:
    """The path with control and non-ASCII characters escaped: a ``%0A`` in a URL cannot forge a log line."""
    return path if path.isascii() and path.isprintable() else path.encode("unicode_escape").decode("ascii")
