"""Event-loop stalls: /healthz latency, polled from a process of its own, while one large request is served.

    python -m bench.stall [--baseline REV] [--repeats 3]

Each case sends one request, ``--repeats`` times, to ``python -m api``'s server (granian, one worker, one compute
worker) while /healthz is polled every POLL_S on its own connection; reported are the polls' p50 and max in ms
and the request's status. The cases are the requests whose size the server itself handles, not the numerics:

- ``62 MB body``: explicit weights as JSON lists, valid (read, then validated and decoded);
- ``bad value``: the same body with one string where a number must be (a 422 naming the field);
- ``7.9 MB answer``: 20 000 one-value probes with ``spectrum: "summary"`` (a report of that size to encode).

With ``--baseline REV`` the same cases are also served by the code of git revision REV (checked out in a
temporary worktree), in the same run, and the table gives both.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench._servers import JACSPEC, ROOT, serve
from bench._timing import table

POLL_S = 0.005
ENV = {"JACSPEC_COMPUTE_WORKERS": "1"}


def _weights_body(n: int) -> dict[str, Any]:
    """A tanh network whose first weight is an n × n matrix of JSON numbers (about 21 bytes each)."""
    rng = np.random.default_rng(0)
    first = (rng.standard_normal((n, n)) / np.sqrt(n)).tolist()
    return {"network": {"activation": "tanh", "layers": [{"weight": first}, {"weight": [[1.0] * n]}]}}


def cases() -> dict[str, bytes]:
    """Each case's body."""
    valid = json.dumps(_weights_body(1650)).encode()
    bad = valid.replace(b"]]}", b', "x"]]}', 1)
    rows = [[float(v)] for v in np.linspace(-1.0, 1.0, 20_000)]
    answer = {
        "network": {"activation": "tanh", "init": {"widths": [1, 1], "scheme": "xavier_normal"}},
        "inputs": {"data": rows},
        "options": {"spectrum": "summary"},
    }
    return {"62 MB body": valid, "bad value": bad, "7.9 MB answer": json.dumps(answer).encode()}


def _poll(url: str, stop: Event, connection: Connection) -> None:
    """In a process of its own: GET /healthz every POLL_S until ``stop``; send back each poll's latency in s."""
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=10.0) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get("/healthz").raise_for_status()
            elapsed = time.perf_counter() - started
            latencies.append(elapsed)
            time.sleep(max(0.0, POLL_S - elapsed))
    connection.send(latencies)


def measure(url: str, body: bytes) -> tuple[list[float], int, int]:
    """The /healthz latencies while ``body`` is posted, the answer's status and its size in bytes."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    here, there = context.Pipe()
    poller = context.Process(target=_poll, args=(url, stop, there))
    poller.start()
    time.sleep(0.5)
    with httpx.Client(base_url=url, timeout=120.0) as client:
        response = client.post("/v1/analyses", content=body, headers={"content-type": "application/json"})
    time.sleep(0.2)
    stop.set()
    latencies: list[float] = here.recv()
    poller.join()
    return latencies, response.status_code, len(response.content)


@contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """The tree of git revision ``revision``, in a temporary worktree removed at the end."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tree"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(path), revision], cwd=ROOT, check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=True)


def run(root: Path, bodies: dict[str, bytes], repeats: int) -> dict[str, tuple[float, float, str]]:
    """Per case: the /healthz p50 and max (ms) over every repeat, and the statuses seen, served from ``root``."""
    env = {**ENV, "PYTHONPATH": f"{root}:{root / 'sdk' / 'src'}"}
    results = {}
    with serve(JACSPEC, env=env, factory=True, server="granian", root=root) as (url, _):
        for name, body in bodies.items():
            latencies: list[float] = []
            statuses = set()
            for _ in range(repeats):
                polls, status, size = measure(url, body)
                latencies += polls
                statuses.add(f"{status} ({size / 1e6:.1f} MB)")
            p50 = statistics.median(latencies) * 1e3
            results[name] = (p50, max(latencies) * 1e3, ", ".join(sorted(statuses)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="a git revision to measure too, in the same run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bodies = cases()
    rows: list[list[object]] = []

    def add(code: str, results: dict[str, tuple[float, float, str]]) -> None:
        for name, (p50, peak, status) in results.items():
            rows.append([code, name, f"{len(bodies[name]) / 1e6:.1f}", status, f"{p50:.1f}", f"{peak:.1f}"])

    if args.baseline:
        with checkout(args.baseline) as tree:
            add(args.baseline, run(tree, bodies, args.repeats))
    add("this tree", run(ROOT, bodies, args.repeats))
    header = ["code", "case", "body MB", "answer", "/healthz p50 ms", "/healthz max ms"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
