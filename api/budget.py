"""Request bodies in flight admitted against a byte budget (JACSPEC_BODY_BUDGET_BYTES), per worker process.

A body over ``SMALL_BODY_BYTES`` reserves its bytes before the app reads a byte of it and keeps them until the
response is complete (the app has returned): the body and what is parsed from it live that long. A body that
declares its length (``Content-Length``) reserves it at once; if it does not fit what other bodies leave, it
waits, first come first served, for at most JACSPEC_QUEUE_TIMEOUT seconds, and is then refused 503 with
``Retry-After``. A body without a declared length (chunked) reserves its bytes as they arrive, without waiting
(two half-read bodies waiting for each other would wait for ever), and is refused 503 as soon as they do not fit.
A body that could never fit — larger than the whole budget — is refused 413. A Content-Length over
JACSPEC_MAX_BODY_BYTES passes through untouched: the app refuses it 413 before reading (``api.ingest.body``).

Bodies up to ``SMALL_BODY_BYTES`` (and a chunked body's first ``SMALL_BODY_BYTES``) cost nothing: ``/healthz``,
the metrics and small analyses are never kept waiting by large uploads. Each refusal closes the connection,
since the body it leaves unread would otherwise have to be read to reach the next request.

With API keys set, a request that does not present a valid key reserves nothing: the app refuses it 401 before
reading its body, so that nobody without a key can fill the budget.

The middleware is plain ASGI: it wraps ``receive`` and never buffers a byte itself.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from anyio import Event, move_on_after
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import matches, presented_keys
from api.compute import busy
from api.ingest.body import INLINE_PARSE_BYTES
from api.problems import ProblemError, problem_response
from service.text import counted as with_noun

SMALL_BODY_BYTES = INLINE_PARSE_BYTES
"""Bodies up to this size (64 KiB) are admitted without touching the budget."""


@dataclass(eq=False)
class _Waiter:
    size: int
    granted: Event = field(default_factory=Event)


class ByteBudget:
    """At most ``total`` bytes reserved at once; a reservation that does not fit waits its turn (first come,
    first served) for a bounded time."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._waiting: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """Reservations waiting for bytes to be released."""
        return len(self._waiting)

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes if they fit now, whoever is waiting (for a body already being read)."""
        if self.used + size > self.total:
            return False
        self.used += size
        return True

    async def reserve(self, size: int, timeout: float) -> bool:
        """Reserve ``size`` bytes, waiting behind earlier reservations for at most ``timeout`` seconds; whether
        they were reserved. A reservation that is cancelled while it waits takes nothing."""
        if not self._waiting and self.take(size):
            return True
        waiter = _Waiter(size)
        self._waiting.append(waiter)
        try:
            with move_on_after(timeout):
                await waiter.granted.wait()
        except BaseException:
            self._withdraw(waiter)
            raise
        if waiter.granted.is_set():
            return True
        self._withdraw(waiter)
        return False

    def release(self, size: int) -> None:
        """Give back ``size`` reserved bytes, and grant the waiting reservations that now fit, in order."""
        self.used -= size
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self.used + self._waiting[0].size <= self.total:
            waiter = self._waiting.popleft()
            self.used += waiter.size
            waiter.granted.set()

    def _withdraw(self, waiter: _Waiter) -> None:
        """Undo a reservation whose waiter is leaving: give back its bytes if it was granted, else leave the queue
        (and let those behind it go ahead if they fit)."""
        if waiter.granted.is_set():
            self.release(waiter.size)
        else:
            self._waiting.remove(waiter)
            self._grant()


class BodyBudgetMiddleware:
    """Admits request bodies against ``budget``: see the module's docstring."""

    def __init__(
        self, app: ASGIApp, budget: ByteBudget, max_body_bytes: int, wait: float, keys: Sequence[bytes] = ()
    ) -> None:
        self.app = app
        self.keys = keys
        """The API keys as bytes (none: no auth)."""
        self.budget = budget
        self.max_body_bytes = max_body_bytes
        self.wait = wait
        self.retry_after = max(1, math.ceil(wait))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is None and not self._authorised(scope):
            await self.app(scope, receive, send)
        elif declared is None:
            await self._streamed(scope, receive, send)
        elif declared <= SMALL_BODY_BYTES or declared > self.max_body_bytes or not self._authorised(scope):
            await self.app(scope, receive, send)
        else:
            await self._declared(declared, scope, receive, send)

    async def _declared(self, size: int, scope: Scope, receive: Receive, send: Send) -> None:
        """A body of a declared ``size``: reserved (or refused) before the app runs, released after it."""
        if size > self.budget.total:
            await self._refuse(self._too_large(size), scope, receive, send)
            return
        if not await self.budget.reserve(size, self.wait):
            busy = self._busy(f"this body's {size} bytes did not fit within {self.wait:g} s (JACSPEC_QUEUE_TIMEOUT)")
            await self._refuse(busy, scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.budget.release(size)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A body of no declared length: its bytes past SMALL_BODY_BYTES reserved as they arrive (a ProblemError
        raised into the app's read when they do not fit), all released after the app."""
        received = 0
        reserved = 0

        async def counted() -> Message:
            nonlocal received, reserved
            message = await receive()
            received += len(message.get("body", b""))
            need = max(0, received - SMALL_BODY_BYTES) - reserved
            if need > 0:
                if received > self.budget.total:
                    raise self._too_large(received)
                if not self.budget.take(need):
                    raise self._busy(f"this body did not fit past its first {with_noun(received, 'byte')}")
                reserved += need
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            self.budget.release(reserved)

    def _authorised(self, scope: Scope) -> bool:
        """Whether the request may hold budget: no keys are set, or every key header it presents holds one."""
        if not self.keys:
            return True
        headers = Headers(scope=scope)
        presented = presented_keys(headers.getlist("authorization"), headers.getlist("x-api-key"))
        return bool(presented) and all([matches(key, self.keys) for key in presented])  # noqa: C419 - compare all

    def _too_large(self, size: int) -> ProblemError:
        return ProblemError(
            413,
            "Content Too Large",
            f"the body ({size} bytes or more) exceeds the {self.budget.total} bytes of bodies this server holds at"
            " once (JACSPEC_BODY_BUDGET_BYTES)",
            headers={"Connection": "close"},
        )

    def _busy(self, why: str) -> ProblemError:
        return busy(
            f"the request bodies in progress fill this server's {self.budget.total} bytes"
            f" (JACSPEC_BODY_BUDGET_BYTES) and {why}",
            self.retry_after,
            headers={"Connection": "close"},
        )

    async def _refuse(self, error: ProblemError, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(error.problem, Request(scope), error.headers)
        await response(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length, or None when absent or not a plain number (the server frames such a body itself)."""
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None
