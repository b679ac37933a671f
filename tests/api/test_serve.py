"""``python -m api`` starts granian on the app factory with the settings' host, port, workers, log format and
connection limits, BLAS on one thread, and gives several workers a fresh directory in which prometheus-client
adds up their metrics; and importing ``api.main`` has no effect on the process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import api.__main__ as serve

MULTIPROC_DIR = serve.MULTIPROC_DIR


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """granian's server replaced by a recorder of its arguments and of PROMETHEUS_MULTIPROC_DIR while it served."""
    calls: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, app: str, **kwargs: Any) -> None:
            self.call = {"app": app} | kwargs

        def serve(self) -> None:
            directory = os.environ.get(MULTIPROC_DIR)
            blas = {name: os.environ.get(name) for name in serve.ONE_BLAS_THREAD}
            calls.append(
                {"dir": directory, "dir_is_empty": directory and not os.listdir(directory), "blas": blas} | self.call
            )

    monkeypatch.setattr(serve, "Server", Recorder)
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)
    for name in serve.ONE_BLAS_THREAD:
        monkeypatch.delenv(name, raising=False)
    return calls


def test_one_worker_by_default(runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_PORT", "9123")
    serve.main()
    [call] = runs
    assert (call["app"], call["factory"]) == ("api.main:create_app", True)
    assert (call["address"], call["port"], call["workers"]) == ("127.0.0.1", 9123, 1)
    assert call["log_access"] is False
    assert call["dir"] is None


def test_connection_limits_come_from_the_settings(runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("JACSPEC_MAX_HEADER_BYTES", "32768")
    monkeypatch.setenv("JACSPEC_MAX_CONNECTIONS", "7")
    serve.main()
    [call] = runs
    assert call["http"] == "1"  # HTTP/1.1 only: no HTTP/2 with its own, larger, header limit
    assert call["backpressure"] == 7
    assert call["http1_settings"].header_read_timeout == 2500  # milliseconds
    assert call["http1_settings"].max_buffer_size == 32768


def test_several_workers_share_a_fresh_metrics_directory(
    runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JACSPEC_WORKERS", "3")
    monkeypatch.setenv("JACSPEC_LOG_FORMAT", "json")
    serve.main()
    [call] = runs
    assert call["workers"] == 3
    assert call["log_dictconfig"]["formatters"]["default"] == {"()": "api.logs.JsonFormatter"}
    assert call["dir"] is not None
    assert call["dir_is_empty"]
    assert not Path(call["dir"]).exists()  # removed at exit
    assert MULTIPROC_DIR not in os.environ


def test_a_directory_given_is_used_and_kept(
    runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JACSPEC_WORKERS", "2")
    monkeypatch.setenv(MULTIPROC_DIR, str(tmp_path))
    serve.main()
    assert runs[0]["dir"] == str(tmp_path)
    assert tmp_path.is_dir()
    assert os.environ[MULTIPROC_DIR] == str(tmp_path)


def test_workers_must_be_positive(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JACSPEC_WORKERS", "0")
    with pytest.raises(SystemExit) as refused:
        serve.main()
    assert refused.value.code == 2
    assert "JACSPEC_WORKERS: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_sigterm_ends_with_status_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM before granian has set its own handler ends python -m api with status 0, not -15."""
    monkeypatch.setattr(serve, "server", lambda _: signal.raise_signal(signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            serve.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 0


def test_blas_is_set_to_one_thread_unless_the_environment_says_otherwise(
    runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    serve.main()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    serve.main()
    assert runs[0]["blas"] == {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert runs[1]["blas"]["OPENBLAS_NUM_THREADS"] == "2"


def _python(code: str, **env: str) -> Any:
    """What ``code``, run by a fresh interpreter with ``env`` added to a copy of this environment, prints (JSON)."""
    environment = {**os.environ, **env}
    for name in serve.ONE_BLAS_THREAD:
        environment.pop(name, None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    return json.loads(result.stdout)


BLAS_THREADS = """
from threadpoolctl import threadpool_info
blas = sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
"""


def test_the_server_process_runs_blas_on_one_thread() -> None:
    """``python -m api``'s process, where granian's worker would build the app: numpy is loaded with BLAS on one
    thread."""
    code = f"""
import importlib, json
import api.__main__ as serve

class Run:
    def __init__(self, app, **kwargs):
        self.app = app

    def serve(self):
        module, _, name = self.app.partition(":")
        getattr(importlib.import_module(module), name)()
        {BLAS_THREADS.strip().replace(chr(10), chr(10) + "        ")}
        print(json.dumps(blas))

serve.Server = Run
serve.main()
"""
    assert _python(code) == [1]


def test_importing_the_app_module_builds_nothing_and_starts_no_thread() -> None:
    code = f"""
import json, threading
import numpy
{BLAS_THREADS}
before, threads = blas, threading.active_count()
import api.main
{BLAS_THREADS}
print(json.dumps([before == blas, threading.active_count() - threads, hasattr(api.main, "app")]))
"""
    assert _python(code, OPENBLAS_NUM_THREADS="2") == [True, 0, False]
