"""``python -m api`` starts uvicorn with the settings' host, port, workers and log format, and gives several workers
a fresh directory in which prometheus-client adds up their metrics."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

import api.__main__ as serve

MULTIPROC_DIR = serve.MULTIPROC_DIR


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """uvicorn.run replaced by a recorder of its arguments and of PROMETHEUS_MULTIPROC_DIR while it ran."""
    calls: list[dict[str, Any]] = []

    def run(app: str, **kwargs: Any) -> None:
        directory = os.environ.get(MULTIPROC_DIR)
        calls.append({"app": app, "dir": directory, "dir_is_empty": directory and not os.listdir(directory), **kwargs})

    monkeypatch.setattr("uvicorn.run", run)
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)
    return calls


def test_one_worker_by_default(runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_PORT", "9123")
    serve.main()
    [call] = runs
    assert call["app"] == "api.main:app"
    assert (call["host"], call["port"], call["workers"]) == ("127.0.0.1", 9123, 1)
    assert call["access_log"] is False
    assert call["dir"] is None


def test_several_workers_share_a_fresh_metrics_directory(
    runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JACSPEC_WORKERS", "3")
    monkeypatch.setenv("JACSPEC_LOG_FORMAT", "json")
    serve.main()
    [call] = runs
    assert call["workers"] == 3
    assert call["log_config"]["formatters"]["default"] == {"()": "api.logs.JsonFormatter"}
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


def test_workers_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_WORKERS", "0")
    with pytest.raises(ValueError, match="workers"):
        serve.main()


def test_sigterm_ends_with_status_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn raises a SIGTERM it handled again once it has shut down; python -m api exits 0 then, not -15."""
    monkeypatch.setattr("uvicorn.run", lambda *_, **__: signal.raise_signal(signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            serve.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 0
