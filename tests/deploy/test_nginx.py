"""deploy/nginx.conf in Debian's nginx, its upstream pointed at two ``python -m api`` instances on loopback ports.

Requests reach both instances with their X-Request-ID, a body over the service's limit is refused by nginx itself
(413 problem+json), and an instance stopped with SIGTERM while requests flow costs no request: nginx hands what
the stopping instance refuses or drops to the other one. Only the upstream servers and the listening address of
the file are changed (``tests/deploy/nginx_conf.py``); pid file and startup log go to a temporary directory. Each
test has instances and an nginx of its own.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.settings import Settings
from tests import connections
from tests.deploy import nginx_conf
from tests.helpers import STOP_TIMEOUT_S, Server, free_port, json_lines, start_server, stop, wait_healthy, wait_until

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
LOG_TIMEOUT_S = 10.0
"""How long a log line may take to appear after its response (each is written just after its response)."""
UUID_HEX = re.compile(r"[0-9a-f]{32}")

if NGINX is None and os.environ.get("CI"):
    pytest.fail("CI must install Debian's nginx (see .ci/run)", pytrace=False)
pytestmark = pytest.mark.skipif(NGINX is None, reason="Debian's nginx is not installed (CI installs it)")


def request_ids(server: Server) -> set[str]:
    """The request ids of the instance's access lines so far (JSON lines on its stdout)."""
    return {str(line["request_id"]) for line in json_lines(server.stdout) if line["logger"] == "jacspec.access"}


@dataclass
class Balanced:
    """nginx with deploy/nginx.conf at ``url``, in front of instances ``a`` and ``b``."""

    url: str
    a: Server
    b: Server
    nginx_log: Path

    def nginx_ids(self, expected: set[str]) -> set[str]:
        """The request ids of nginx's access lines, once they include ``expected`` (or time is up)."""
        return wait_until(
            lambda: {str(line["request_id"]) for line in json_lines(self.nginx_log)},
            lambda ids: ids >= expected,
            LOG_TIMEOUT_S,
        )


def _start_nginx(
    directory: Path, upstreams: list[Server], text: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Debian's nginx with deploy/nginx.conf (or ``text``) pointed at ``upstreams`` and a free port, its files in
    ``directory``."""
    assert NGINX is not None
    port = free_port()
    servers = [f"127.0.0.1:{server.port}" for server in upstreams]
    conf = directory / "nginx.conf"
    conf.write_text(nginx_conf.pointed_at(text or nginx_conf.CONF.read_text(), servers, f"127.0.0.1:{port}"))
    settings = f"daemon off; pid {directory}/nginx.pid;"
    command = [NGINX, "-p", str(directory), "-c", str(conf), "-e", "stderr", "-g", settings]
    with (directory / "nginx.stdout").open("wb") as stdout, (directory / "nginx.stderr").open("wb") as stderr:
        return subprocess.Popen(command, stdout=stdout, stderr=stderr), port


@pytest.fixture
def balanced(tmp_path: Path) -> Iterator[Balanced]:
    """Two fresh instances and nginx in front of them, for one test alone (one test stops the instances)."""
    a, b = (start_server(tmp_path, name, JACSPEC_LOG_FORMAT="json") for name in ("a", "b"))
    nginx: subprocess.Popen[bytes] | None = None
    try:
        a.wait_healthy(others=[b.process])
        b.wait_healthy(others=[a.process])
        nginx, port = _start_nginx(tmp_path, [a, b])
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, [nginx], lambda: f"nginx did not start:\n{(tmp_path / 'nginx.stderr').read_text()[-3000:]}")
        yield Balanced(url, a, b, tmp_path / "nginx.stdout")
    finally:
        stop(*(process for process in (nginx, a.process, b.process) if process is not None))


@dataclass
class Guarded:
    """nginx with deploy/nginx.conf, its client timeouts shortened to 1 s, in front of ``instance`` at ``port``."""

    port: int
    instance: Server


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    directory = Path(tmp_path_factory.mktemp("guarded"))
    instance = start_server(directory, "api", JACSPEC_LOG_FORMAT="json")
    nginx: subprocess.Popen[bytes] | None = None
    try:
        instance.wait_healthy()
        text = nginx_conf.with_timeouts(nginx_conf.CONF.read_text(), "1s")
        nginx, port = _start_nginx(directory, [instance], text)
        wait_healthy(f"http://127.0.0.1:{port}", [nginx], lambda: (directory / "nginx.stderr").read_text()[-3000:])
        yield Guarded(port, instance)
    finally:
        stop(*(process for process in (nginx, instance.process) if process is not None))


def _logged(instances: list[Server], ids: set[str]) -> dict[str, set[str]]:
    """Which of ``ids`` each instance logged, once all are (or time is up)."""
    return wait_until(
        lambda: {str(i.port): request_ids(i) & ids for i in instances},
        lambda seen: set().union(*seen.values()) == ids,
        LOG_TIMEOUT_S,
    )


def test_requests_reach_both_instances_with_their_ids(balanced: Balanced) -> None:
    ids = {f"lb-{i}" for i in range(8)}
    with httpx.Client(base_url=balanced.url, timeout=30) as client:
        for rid in sorted(ids):
            response = client.post("/v1/bounds", json={"factor": 1.5, "depth": 4}, headers={"X-Request-ID": rid})
            assert response.status_code == 200
            assert response.headers["x-request-id"] == rid
        unusable = client.get("/v1/activations", headers={"X-Request-ID": "not a valid id!"})
    assert unusable.status_code == 200
    fresh = unusable.headers["x-request-id"]
    assert UUID_HEX.fullmatch(fresh)  # made by nginx, and kept by the instance: one id in both logs
    seen = _logged([balanced.a, balanced.b], ids | {fresh})
    a, b = seen.values()
    assert a | b == ids | {fresh}
    assert a, f"round robin sent every request to one instance: {seen}"
    assert b, f"round robin sent every request to one instance: {seen}"
    assert not a & b
    logged_by_nginx = balanced.nginx_ids(ids | {fresh})
    assert logged_by_nginx >= ids | {fresh}, f"nginx's access log:\n{balanced.nginx_log.read_text()[-3000:]}"


def test_an_oversize_body_is_refused_by_nginx(balanced: Balanced) -> None:
    limit = nginx_conf.body_limit(nginx_conf.CONF.read_text())
    assert limit == Settings().max_body_bytes
    port = int(balanced.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # The headers announce one byte too many; nginx answers before any of the body is sent.
        sock.sendall(
            b"POST /v1/analyses HTTP/1.1\r\nHost: jacspec\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {limit + 1}\r\nX-Request-ID: too-big-1\r\n\r\n".encode()
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
    assert response.status == 413
    assert response.getheader("Server") == "nginx"  # not uvicorn
    assert response.getheader("Content-Type") == "application/problem+json"
    assert response.getheader("X-Request-ID") == "too-big-1"
    problem = json.loads(body)
    assert problem["status"] == 413
    assert problem["request_id"] == "too-big-1"
    assert str(limit) in problem["detail"]
    # A request sent to each instance afterwards is logged; the refused one was never passed on.
    for name, instance in {"a": balanced.a, "b": balanced.b}.items():
        after = httpx.get(f"{instance.url}/healthz", headers={"X-Request-ID": f"after-{name}"})
        assert after.status_code == 200
    logged = _logged([balanced.a, balanced.b], {"after-a", "after-b"})
    assert logged == {str(balanced.a.port): {"after-a"}, str(balanced.b.port): {"after-b"}}
    assert "too-big-1" not in request_ids(balanced.a) | request_ids(balanced.b)


def test_metrics_stay_on_the_inner_network(balanced: Balanced) -> None:
    assert httpx.get(f"{balanced.url}/metrics").status_code == 404
    assert httpx.get(f"{balanced.a.url}/metrics").status_code == 200


def test_an_instance_stops_without_a_failed_request(balanced: Balanced) -> None:
    """Three clients keep sending while instance a gets SIGTERM; then b stops too."""
    results: list[tuple[float, int | str]] = []
    done = threading.Event()
    requests = [
        ("POST", "/v1/bounds", {"factors": [0.5, 2.0, 1.5]}),
        ("GET", "/v1/activations", None),
        (
            "POST",
            "/v1/analyses",
            {"network": {"activation": "tanh", "init": {"widths": [8, 8, 2], "scheme": "orthogonal"}}},
        ),
    ]

    def client(offset: int) -> None:
        with httpx.Client(base_url=balanced.url, timeout=30) as http_client:
            i = offset
            while not done.is_set():
                method, path, body = requests[i % len(requests)]
                try:
                    status: int | str = http_client.request(method, path, json=body).status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)
                results.append((time.monotonic(), status))
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        balanced.a.process.send_signal(signal.SIGTERM)
        assert balanced.a.process.wait(STOP_TIMEOUT_S) == 0
        stopped = time.monotonic()
        time.sleep(1.0)
    finally:
        done.set()
        for thread in threads:
            thread.join(60)
    failed = [status for _, status in results if status != 200]
    assert failed == []
    assert len([t for t, _ in results if t < stopped]) >= 10
    assert len([t for t, _ in results if t > stopped]) >= 10
    assert "Granian shutdown completed" in balanced.a.stderr.read_text()

    # With b stopped too, nginx answers itself: 503 problem+json with Retry-After, as the service would.
    balanced.b.process.send_signal(signal.SIGTERM)
    assert balanced.b.process.wait(STOP_TIMEOUT_S) == 0
    none_left = httpx.get(f"{balanced.url}/v1/activations", headers={"X-Request-ID": "nobody-home"})
    assert none_left.status_code == 503
    assert none_left.headers["content-type"] == "application/problem+json"
    assert none_left.headers["retry-after"] == "5"
    assert none_left.json()["request_id"] == "nobody-home"


def test_the_connection_limits_are_the_services() -> None:
    """nginx's client limits are ``python -m api``'s defaults: one set of numbers for both deployments."""
    text = nginx_conf.CONF.read_text()
    settings = Settings()
    assert nginx_conf.seconds(text, "client_header_timeout") == settings.header_timeout
    assert nginx_conf.header_bytes(text) == settings.max_header_bytes
    assert nginx_conf.seconds(text, "client_body_timeout") <= settings.body_timeout


def test_a_trickled_request_head_is_closed_by_nginx(guarded: Guarded) -> None:
    head = connections.REQUEST_HEAD + b"X-Padding: " + b"p" * 200 + b"\r\n\r\n"
    with connections.connect(guarded.port) as sock:
        assert connections.trickle(sock, head, pause=0.1)
        assert connections.closed(sock)


def test_a_stalled_body_is_closed_by_nginx(guarded: Guarded) -> None:
    """Silent for longer than client_body_timeout between two bytes: closed, and never passed to the replica."""
    body = b'{"factor": 1.5, "depth": 4}'
    with connections.connect(guarded.port) as sock:
        sock.sendall(
            connections.REQUEST_HEAD + f"Content-Length: {len(body)}\r\nX-Request-ID: stalled-1\r\n\r\n".encode()
        )
        assert connections.trickle(sock, body, pause=1.5)
        assert connections.closed(sock)
    assert "stalled-1" not in request_ids(guarded.instance)


def test_a_header_over_the_limit_is_refused_by_nginx(guarded: Guarded) -> None:
    assert connections.big_header(guarded.port, 200_000) == 431
    assert connections.big_header(guarded.port, 1_000) == 200


def test_idle_connections_are_closed_by_nginx_and_healthz_answers(guarded: Guarded) -> None:
    status, closed = connections.idle_then_health(guarded.port, 300)
    assert status == 200
    assert closed == 300


def test_a_keep_alive_connection_left_idle_is_closed_by_nginx(guarded: Guarded) -> None:
    with connections.connect(guarded.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: jacspec\r\n\r\n")
        assert connections.answer(sock).status == 200
        assert connections.closed(sock)
