"""Jobs survive their server: ``python -m api`` as a real process group is killed (SIGKILL, no shutdown at all)
while a job runs, and started again on the same database (SQLite and PostgreSQL). The finished job is still there
with its report, byte for byte; the one that was running is failed with type job-interrupted, not left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.api.test_jobs import LONG, SMALL
from tests.helpers import ROOT, Server, free_port, stop

WAIT_S = 60.0
LEASE_S = "1"
"""A short lease, so that the restarted server finds the dead one's lease expired within a second or two."""


def start(logs: Path, name: str, database_url: str) -> Server:
    """``python -m api`` in a session of its own (so that its whole process group, workers included, can be
    killed at once) on ``database_url``."""
    port = free_port()
    env = {
        **os.environ,
        "JACSPEC_WORKERS": "1",
        "JACSPEC_COMPUTE_WORKERS": "1",
        "JACSPEC_HOST": "127.0.0.1",
        "JACSPEC_PORT": str(port),
        "JACSPEC_DATABASE_URL": database_url,
        "JACSPEC_JOB_LEASE_SECONDS": LEASE_S,
    }
    out, err = logs / f"{name}.stdout", logs / f"{name}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
    server = Server(process, port, out, err)
    server.wait_healthy()
    return server


def job(url: str, job_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
    return answer


def wait_status(url: str, job_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        current = job(url, job_id)
        if current["status"] in statuses:
            return current
        assert time.monotonic() < deadline, current
        time.sleep(0.1)


def submit(url: str, body: dict[str, Any]) -> str:
    response = httpx.post(f"{url}/v1/jobs", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_a_killed_server_loses_no_job(tmp_path: Path, database_url: str) -> None:
    first = start(tmp_path, "first", database_url)
    try:
        done = submit(first.url, SMALL)
        assert wait_status(first.url, done, {"succeeded", "failed"})["status"] == "succeeded"
        report = httpx.get(f"{first.url}/v1/jobs/{done}/report", timeout=10).content
        running = submit(first.url, LONG)
        wait_status(first.url, running, {"running"})
    finally:
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
    second = start(tmp_path, "second", database_url)
    try:
        again = job(second.url, done)
        assert again["status"] == "succeeded"
        assert httpx.get(f"{second.url}/v1/jobs/{done}/report", timeout=10).content == report
        interrupted = wait_status(second.url, running, {"succeeded", "failed", "cancelled"})
        assert interrupted["status"] == "failed"
        assert interrupted["error"]["type"] == "urn:jacspec:problem:job-interrupted"
        assert "submit it again" in interrupted["error"]["detail"]
        listed = httpx.get(f"{second.url}/v1/jobs", timeout=10).json()["jobs"]
        assert {j["id"]: j["status"] for j in listed} == {done: "succeeded", running: "failed"}
    finally:
        stop(second.process)
