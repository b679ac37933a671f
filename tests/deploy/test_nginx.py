"""deploy/nginx.conf in Debian's nginx, its upstream pointed at two ``python -m api`` instances on loopback ports.

Requests reach both instances with their X-Request-ID, a body over the service's limit is refused by nginx itself
(413 problem+json), and an instance stopped with SIGTERM while requests flow costs no request: nginx hands what
the stopping instance refuses or drops to the other one. Only the upstream servers and the listening address of
the file are changed (``tests/deploy/nginx_conf.py``); pid file and startup log go to a temporary directory.
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
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.settings import Settings
from tests.conftest import _free_port, wait_healthy
from tests.deploy import nginx_conf

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
UUID_HEX = re.compile(r"[0-9a-f]{32}")

if NGINX is None and os.environ.get("CI"):
    pytest.fail("CI must install Debian's nginx (see .ci/run)", pytrace=False)
pytestmark = pytest.mark.skipif(NGINX is None, reason="Debian's nginx is not installed (CI installs it)")


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def request_ids(self) -> list[str]:
        """The request ids of the instance's access lines so far."""
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [str(line["request_id"]) for line in lines if line["logger"] == "jacspec.access"]


@dataclass
class Balanced:
    url: str
    a: Instance
    b: Instance
    nginx_log: Path


def _start_instance(logs: Path, name: str) -> Instance:
    port = _free_port()
    env = {**os.environ, "JACSPEC_HOST": "127.0.0.1", "JACSPEC_PORT": str(port), "JACSPEC_LOG_FORMAT": "json"}
    env.pop("JACSPEC_WORKERS", None)
    log = logs / f"{name}.stdout"
    with log.open("wb") as stdout, (logs / f"{name}.stderr").open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    return Instance(process, port, log)


def _wait_healthy(url: str, processes: list[subprocess.Popen[bytes]], what: str, logs: Path) -> None:
    def why() -> str:
        stderr = "\n".join(path.read_text()[-1500:] for path in sorted(logs.glob("*.stderr")))
        return f"{what} did not start:\n{stderr}"

    wait_healthy(url, processes, why, START_TIMEOUT_S)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balanced]:
    assert NGINX is not None
    tmp = tmp_path_factory.mktemp("nginx")
    a, b = _start_instance(tmp, "a"), _start_instance(tmp, "b")
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for instance in (a, b):
            _wait_healthy(f"http://127.0.0.1:{instance.port}", [a.process, b.process], "python -m api", tmp)
        port = _free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(
            nginx_conf.pointed_at(
                nginx_conf.CONF.read_text(), [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], f"127.0.0.1:{port}"
            )
        )
        command = [NGINX, "-p", str(tmp), "-c", str(conf), "-e", "stderr", "-g", f"daemon off; pid {tmp}/nginx.pid;"]
        nginx_log = tmp / "nginx.stdout"
        with nginx_log.open("wb") as stdout, (tmp / "nginx.stderr").open("wb") as stderr:
            nginx = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, [nginx], "nginx", tmp)
        yield Balanced(url, a, b, nginx_log)
    finally:
        for process in (nginx, a.process, b.process):
            if process is not None:
                _stop(process)


def _logged(instances: list[Instance], ids: set[str]) -> dict[str, set[str]]:
    """Which of ``ids`` each instance logged, once all are (an access line is written just after its response)."""
    deadline = time.monotonic() + 10
    while True:
        seen = {str(i.port): set(i.request_ids()) & ids for i in instances}
        if set().union(*seen.values()) == ids or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


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
    nginx_lines = [json.loads(line) for line in balanced.nginx_log.read_text().splitlines()]
    assert {line["request_id"] for line in nginx_lines} >= ids | {fresh}


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
    time.sleep(0.2)
    assert "too-big-1" not in balanced.a.request_ids() + balanced.b.request_ids()


def test_metrics_stay_on_the_inner_network(balanced: Balanced) -> None:
    assert httpx.get(f"{balanced.url}/metrics").status_code == 404
    assert httpx.get(f"http://127.0.0.1:{balanced.a.port}/metrics").status_code == 200


def test_an_instance_stops_without_a_failed_request(balanced: Balanced) -> None:
    """Runs last: it stops both instances. Three clients keep sending while instance a gets SIGTERM."""
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
    assert "Finished server process" in (balanced.a.log.with_suffix(".stderr")).read_text()

    # With b stopped too, nginx answers itself: 503 problem+json with Retry-After, as the service would.
    balanced.b.process.send_signal(signal.SIGTERM)
    assert balanced.b.process.wait(STOP_TIMEOUT_S) == 0
    none_left = httpx.get(f"{balanced.url}/v1/activations", headers={"X-Request-ID": "nobody-home"})
    assert none_left.status_code == 503
    assert none_left.headers["content-type"] == "application/problem+json"
    assert none_left.headers["retry-after"] == "5"
    assert none_left.json()["request_id"] == "nobody-home"
