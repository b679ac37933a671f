"""Raw-socket clients that misbehave: trickling a request's head or body, sending a huge header, holding many idle
connections. Shared by the tests of ``python -m api`` (tests/test_connections.py) and of nginx in front of it
(tests/deploy/test_nginx.py); each asserts what the server did (closed, refused, answered), not how fast."""

from __future__ import annotations

import http.client
import socket
import time
from contextlib import ExitStack, suppress

GIVE_UP_S = 60.0
"""How long a misbehaving client goes on before the test concludes that the server never closed it."""
REQUEST_HEAD = b"POST /v1/bounds HTTP/1.1\r\nHost: jacspec\r\nContent-Type: application/json\r\n"


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP_S)


def trickle(sock: socket.socket, data: bytes, pause: float) -> bool:
    """Send ``data`` one byte at a time, ``pause`` seconds apart; True if the server closed the connection first
    (a failed send, or an answer or end of stream waiting to be read), False if all of it went out."""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return True
        if _readable(sock, pause):
            return True
    return False


def _readable(sock: socket.socket, wait: float) -> bool:
    """Whether the server sent something (an answer, or the end of the stream) within ``wait`` seconds."""
    sock.settimeout(wait)
    try:
        return sock.recv(1, socket.MSG_PEEK) is not None
    except TimeoutError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(GIVE_UP_S)


def answer(sock: socket.socket) -> http.client.HTTPResponse:
    """The response the server sends on ``sock`` (read whole)."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response


def closed(sock: socket.socket) -> bool:
    """Read until the server closes the connection (True) or GIVE_UP_S pass (False); whatever it sends is dropped."""
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def big_header(port: int, size: int) -> int:
    """The status of a GET /healthz whose one extra header has ``size`` bytes."""
    with connect(port) as sock:
        head = b"GET /healthz HTTP/1.1\r\nHost: jacspec\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        # The server may answer and close before the whole head is sent; the answer is still there to read.
        with suppress(OSError):
            sock.sendall(head)
        return answer(sock).status


def idle_then_health(port: int, count: int) -> tuple[int, int]:
    """Open ``count`` connections that send nothing, then GET /healthz on a new one: its status, and how many of
    the idle ones the server then closed (all of them, once its header timeout has passed)."""
    with ExitStack() as stack:
        idle = [stack.enter_context(connect(port)) for _ in range(count)]
        health = http.client.HTTPConnection("127.0.0.1", port, timeout=GIVE_UP_S)
        try:
            health.request("GET", "/healthz")
            status = health.getresponse().status
        finally:
            health.close()
        return status, sum(closed(sock) for sock in idle)
