"""A Dask cluster on loopback for the cluster test and bench/scale.py: a scheduler and worker processes started as
subprocesses (``python -m distributed.cli.dask_scheduler`` / ``dask_worker``), with PYTHONPATH set to the repository
root and sdk/src so that the workers import ``api`` and ``service``; stopped (SIGTERM, then SIGKILL) at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distributed import Client

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(ROOT / "sdk" / "src")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@contextmanager
def dask_cluster(workers: int = 1, nthreads: int = 2, port: int | None = None) -> Iterator[str]:
    """The scheduler's address (``tcp://127.0.0.1:<port>``, on ``port`` or a free one) once ``workers`` workers of
    ``nthreads`` threads each have joined it."""
    port = port or _free_port()
    address = f"tcp://127.0.0.1:{port}"
    common = ["--no-dashboard"]
    environment = _environment()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": environment}
    scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port)]
    processes = [subprocess.Popen([*scheduler, *common], **quiet)]  # type: ignore[call-overload]
    try:
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", str(nthreads)]
        for _ in range(workers):
            worker_args = [*worker, "--no-nanny", "--host", "127.0.0.1", *common]
            processes.append(subprocess.Popen(worker_args, **quiet))  # type: ignore[call-overload]
        with Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(workers, timeout=START_TIMEOUT_S)
        yield address
    finally:
        _stop(processes)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to the workers and the scheduler, SIGKILL to any still running 10 s later."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def finished_tasks(dask_scheduler: object) -> list[str]:
    """On the scheduler (``Client.run_on_scheduler``): the keys of every task that has finished (reached
    "memory"), from its transition log."""
    log = getattr(dask_scheduler, "transition_log")  # noqa: B009  (a Scheduler, untyped here)
    return sorted({str(entry.key) for entry in log if entry.finish == "memory"})


def running_tasks(dask_worker: object) -> int:
    """On a worker (``Client.run``): how many of its threads are running a task now."""
    return len(getattr(dask_worker, "active_threads"))  # noqa: B009  (a Worker, untyped here)
