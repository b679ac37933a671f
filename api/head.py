"""HEAD on every GET route: the request is served as GET and the answer's body is dropped.

FastAPI's routes answer only the methods they declare (Starlette's own routes add HEAD to GET, FastAPI's do not),
and declaring HEAD on each route would put a second operation per path into the OpenAPI document. This middleware
answers HEAD like GET instead — the same status and headers, Content-Length included, with an empty body (RFC 9110
§9.3.2) — so a HEAD on a path without GET is GET's 405 or 404, without its body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadMiddleware:
    """Pure ASGI middleware: HEAD is routed as GET; each body message it sends is emptied."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)
