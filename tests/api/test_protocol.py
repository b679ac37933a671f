"""api.protocol.BodyProtocol: request bodies reach the app whole and in order, a chunk with nothing pending
uncopied, driven as uvicorn's own tests drive a protocol (a fake transport, bytes fed to ``data_received``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from api.protocol import BodyProtocol


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.paused = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        pass


class _App:
    """Reads the body message by message, keeping each message's body object, then answers its length."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message: Message = {"more_body": True}
        while message.get("more_body", False):
            message = await receive()
            self.bodies.append(message["body"])
            await asyncio.sleep(0)
        length = str(len(b"".join(self.bodies))).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(length))]}
        )
        await send({"type": "http.response.body", "body": length})


def _connect(app: _App) -> tuple[BodyProtocol, _Transport]:
    config = Config(app=app, http=BodyProtocol, lifespan="off", log_config=None)
    protocol = BodyProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _head(length: int) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % length
    )


BODY = bytes(range(256)) * 1600  # 400 KiB: four pieces, each above uvicorn's 64 KiB high-water mark


@pytest.mark.anyio
@pytest.mark.parametrize("together", [1, 2, 4], ids=["one-at-a-time", "two-pending", "all-pending"])
async def test_the_body_reaches_the_app_whole_and_in_order(together: int) -> None:
    """Pieces fed one at a time (each taken before the next arrives: held uncopied) or several before the app
    runs (appended by uvicorn's own path): the app reads the body, exactly."""
    app = _App()
    protocol, transport = _connect(app)
    pieces = [BODY[i : i + len(BODY) // 4] for i in range(0, len(BODY), len(BODY) // 4)]
    protocol.data_received(_head(len(BODY)))
    for start in range(0, len(pieces), together):
        for piece in pieces[start : start + together]:
            protocol.data_received(piece)
        await _settle()
    assert b"".join(app.bodies) == BODY
    assert transport.written.startswith(b"HTTP/1.1 200")
    assert transport.written.endswith(str(len(BODY)).encode())
    assert transport.paused >= 1


@pytest.mark.anyio
async def test_a_chunk_with_nothing_pending_reaches_the_app_uncopied(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes httptools hands to on_body are the very object the app receives."""
    handed: list[bytes] = []
    on_body = BodyProtocol.on_body

    def recorded(self: BodyProtocol, body: bytes) -> None:
        handed.append(body)
        on_body(self, body)

    monkeypatch.setattr(BodyProtocol, "on_body", recorded)  # before httptools' parser binds it
    app = _App()
    protocol, _ = _connect(app)
    protocol.data_received(_head(len(BODY)))
    for start in range(0, len(BODY), 100_000):
        protocol.data_received(BODY[start : start + 100_000])
        await _settle()
    assert [len(b) for b in app.bodies if b] == [len(b) for b in handed]
    assert all(got is sent for got, sent in zip([b for b in app.bodies if b], handed, strict=True))
