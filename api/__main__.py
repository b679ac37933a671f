"""``python -m api``: serve on JACSPEC_HOST:JACSPEC_PORT (127.0.0.1:8000 by default) with JACSPEC_WORKERS processes.

It runs ``uvicorn --factory api.main:create_app`` after setting ``ONE_BLAS_THREAD`` in the environment, which
uvicorn's worker processes inherit (the Dockerfile's ``ENV`` sets the same), and is the container's start command
(the Dockerfile's ``CMD``). SIGTERM (``docker stop``) stops it cleanly: uvicorn closes its socket, finishes the
requests in progress, runs the app's shutdown, then raises the SIGTERM again, which ``_stopped`` turns into exit
status 0. With more than one worker, ``PROMETHEUS_MULTIPROC_DIR`` (unless set already) names a fresh temporary
directory, removed at exit, in which the workers' metrics meet (see ``api.metrics``).
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from api.logs import log_config
from api.settings import Settings

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""BLAS on one thread per process (OpenBLAS, OpenMP builds, MKL), unless the environment says otherwise: the
cores go to the compute slots' layer pool instead (``api.compute``). Read by BLAS when numpy is first imported."""


def main() -> None:
    for name, value in ONE_BLAS_THREAD.items():
        os.environ.setdefault(name, value)
    settings = Settings()
    signal.signal(signal.SIGTERM, _stopped)
    with _shared_metrics(settings.workers):
        uvicorn.run(
            "api.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=log_config(settings.log_format),
            access_log=False,
        )


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handler: after its graceful shutdown, or before it started. Exit 0."""
    raise SystemExit(0)


@contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """For several workers, a directory for prometheus-client's multiprocess mode, set before they start."""
    if workers == 1 or os.environ.get(MULTIPROC_DIR):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="jacspec-metrics-") as directory:
        os.environ[MULTIPROC_DIR] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROC_DIR]


if __name__ == "__main__":
    main()
