"""``python -m api [--host H] [--port P] [--workers N]``: serve on JACSPEC_HOST:JACSPEC_PORT (127.0.0.1:8000 by
default) with JACSPEC_WORKERS processes; an option given sets its variable (for this process and its workers).
Every other setting is its JACSPEC_* variable alone (docs/operations.md); an unknown option, or a setting that is
not valid, ends it with a message and exit status 2.

It serves ``api.main:create_app`` with granian (HTTP/1.1 only) after setting ``ONE_BLAS_THREAD`` in the
environment, which granian's worker processes inherit (the Dockerfile's ``ENV`` sets the same), and is the
container's start command (the Dockerfile's ``CMD``). granian rather than uvicorn because it bounds what a client
may hold: a request head must arrive whole within JACSPEC_HEADER_TIMEOUT of the connection's opening or of the
previous response (which also closes idle keep-alive connections), may not exceed JACSPEC_MAX_HEADER_BYTES (431),
and each worker serves at most JACSPEC_MAX_CONNECTIONS connections at once (the rest wait in the listen backlog);
uvicorn has no header-read timeout, no idle limit on a fresh connection and no header-size limit with httptools.
The body's own timeout is the app's (``api.ingest.body``). SIGTERM (``docker stop``) stops it cleanly: granian
stops accepting, finishes the requests in progress, runs the app's shutdown and exits 0 (``_stopped`` covers a
SIGTERM that comes before granian has set its own handler). With more than one worker,
``PROMETHEUS_MULTIPROC_DIR`` (unless set already) names a fresh temporary directory, removed at exit, in which
the workers' metrics meet (see ``api.metrics``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server import MPServer, MTServer, Server
from pydantic import ValidationError

from api.logs import log_config
from api.settings import Settings

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""BLAS on one thread per process (OpenBLAS, OpenMP builds, MKL), unless the environment says otherwise: the
cores go to the compute workers instead (``api.compute``; ``api.worker`` sets the same). Read by BLAS when numpy
is first imported."""


OPTIONS = {"host": "JACSPEC_HOST", "port": "JACSPEC_PORT", "workers": "JACSPEC_WORKERS"}
"""The command line's options and the settings' variables they set."""


def main(argv: Sequence[str] = ()) -> None:
    """Serve, with the command line's options ``argv`` (none when called from Python)."""
    parser = _parser()
    for option, value in vars(parser.parse_args(argv)).items():
        if value is not None:
            os.environ[OPTIONS[option]] = value
    for name, value in ONE_BLAS_THREAD.items():
        os.environ.setdefault(name, value)
    try:
        settings = Settings()
    except ValidationError as exc:
        parser.error("; ".join(f"JACSPEC_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()))
    signal.signal(signal.SIGTERM, _stopped)
    with _shared_metrics(settings.workers):
        server(settings).serve()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description="Serve jacspec. Every setting is a JACSPEC_* environment variable (docs/operations.md); these"
        " options set the three most often changed.",
    )
    for option, variable in OPTIONS.items():
        parser.add_argument(f"--{option}", metavar=option.upper(), help=f"sets {variable}")
    return parser


def server(settings: Settings) -> MPServer | MTServer:
    """granian serving the app factory over HTTP/1.1 with the settings' address, workers, logs and limits.

    HTTP/1.1 only: HTTP/2 (cleartext, by prior knowledge) would take headers up to granian's HTTP/2 limit instead.
    Its own access log is off: ``jacspec.access`` says the same and more.
    """
    return Server(
        "api.main:create_app",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        http=HTTPModes.http1,
        backpressure=settings.max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=round(settings.header_timeout * 1000), max_buffer_size=settings.max_header_bytes
        ),
        log_dictconfig=log_config(settings.log_format),
        log_access=False,
        factory=True,
    )


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside granian's own handler (before it set it): exit 0."""
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
    main(sys.argv[1:])
