"""``python -m api`` (what ``make serve`` runs) bounds what a client may hold: a request head trickled, a body
trickled, a huge header, many idle connections. Timeouts are short here (settings); /healthz is answered
throughout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import connections
from tests.helpers import Server, start_server, stop

LIMITS = {
    "JACSPEC_HEADER_TIMEOUT": "1",
    "JACSPEC_BODY_TIMEOUT": "1",
    "JACSPEC_MAX_HEADER_BYTES": "65536",
    "JACSPEC_MAX_CONNECTIONS": "100",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    served = start_server(Path(tmp_path_factory.mktemp("connections")), **LIMITS)
    try:
        served.wait_healthy()
        yield served
    finally:
        stop(served.process)


def test_a_trickled_request_head_is_closed(server: Server) -> None:
    head = connections.REQUEST_HEAD + b"X-Padding: " + b"p" * 200 + b"\r\n\r\n"
    with connections.connect(server.port) as sock:
        assert connections.trickle(sock, head, pause=0.1)  # 25 s to send it all; closed after about 1 s
        assert connections.closed(sock)


def test_a_trickled_body_is_refused_408_and_closed(server: Server) -> None:
    body = json.dumps({"factor": 1.5, "depth": 4, "padding": "p" * 300}).encode()
    with connections.connect(server.port) as sock:
        sock.sendall(connections.REQUEST_HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode())
        assert connections.trickle(sock, body, pause=0.1)
        response = connections.answer(sock)
        assert response.status == 408
        assert response.getheader("Content-Type") == "application/problem+json"
        assert connections.closed(sock)


def test_a_header_over_the_limit_is_refused_431(server: Server) -> None:
    assert connections.big_header(server.port, 200_000) == 431
    assert connections.big_header(server.port, 1_000) == 200


def test_idle_connections_are_closed_and_healthz_answers(server: Server) -> None:
    """300 idle connections, three times JACSPEC_MAX_CONNECTIONS: /healthz waits its turn, then answers."""
    status, closed = connections.idle_then_health(server.port, 300)
    assert status == 200
    assert closed == 300


def test_a_keep_alive_connection_left_idle_is_closed(server: Server) -> None:
    with connections.connect(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: jacspec\r\n\r\n")
        assert connections.answer(sock).status == 200
        assert connections.closed(sock)
