"""Load: concurrent loopback clients mixing small, heavy and over-limit requests for a bounded time, beside
"stallers" that send the worst requests the default limits admit, while /healthz is polled from a separate
process; then whether the server held up.

    python -m bench.load [--seconds 60] [--clients 50] [--stallers 1] [--max-requests 20000]

A staller sends, in a loop, the heaviest analyses admitted at the default limits: the widest ``[n, n, 1]`` under
the dense solver (``options.rtol`` 1e-13) and the widest orthogonal draw, each found by bisection over the
server's own estimate (``api.sizes``, ``api.limits``). Each holds a compute worker until it is done or its
deadline (JACSPEC_MAX_SECONDS) stops it; its answers (200 or 413) are counted apart. The /healthz poller runs in
a process of its own (its latencies are not those of this process's event loop), every POLL_S; the server's and
its compute workers' memory is sampled meanwhile.

Each client sends, at random (seeded): mostly small analyses (an init recipe of 3 layers × 64), sometimes a heavy
one (20 layers × 1024 → 10, about 4·10¹⁰ estimated flops), and now and then one over a limit that must be
refused: a body over JACSPEC_MAX_BODY_BYTES (set to 8 MiB here) with 413, whatever the load, and an init recipe of
10¹⁰ parameters with 413, or 503 when the compute queue is full (which is checked before a body is read). Every
answer must be 2xx, 413, 429 or 503; /healthz must answer 200 within a second at every poll. The
script prints the counts by kind and status, those verdicts, the server's peak RSS (VmHWM) and the latency of
the small requests, the /healthz p99 and max (goal: max under 250 ms), the 5xx count, and exits 1 if a verdict
is "no".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from api.problems import ProblemError
from api.settings import Settings
from api.sizes import checked_size
from bench._servers import JACSPEC, serve
from bench._timing import table
from jacspec.models import AnalysisRequest

MIB = 2**20
MAX_BODY_BYTES = 8 * MIB
ACCEPTED = {413, 429, 503}
"""Besides 2xx: what a loaded server may answer."""
HEALTH_TIMEOUT_S = 1.0
POLL_S = 0.05
HEALTH_GOAL_S = 0.25
SAMPLE_S = 0.2
GRACE_S = 1.0
"""After the deadline, how long the requests in flight may take to finish; those still waiting then (queued
behind heavy analyses, typically) are cut off, counted apart and left out of the verdicts."""
CUT_OFF = "cut off"

SMALL: dict[str, Any] = {
    "network": {"activation": "tanh", "init": {"widths": [64, 64, 64, 64], "scheme": "orthogonal", "gain": 0.9}},
    "inputs": {"count": 4},
}
HEAVY: dict[str, Any] = {
    "network": {"activation": "tanh", "init": {"widths": [1024] * 20 + [10], "scheme": "xavier_normal"}},
    "inputs": {"count": 4},
}
TOO_MANY_PARAMETERS: dict[str, Any] = {
    "network": {"activation": "tanh", "init": {"widths": [100_000, 100_000, 10], "scheme": "he_normal"}},
}


def widest_admitted(body: Callable[[int], dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """``body(n)`` with the largest n the limits in ``settings`` admit (bisection over the server's estimate); the
    liveness tests (tests/api/test_workers.py) load the server with the same requests."""
    low, high = 1, 1 << 16
    while high - low > 1:
        middle = (low + high) // 2
        try:
            checked_size(AnalysisRequest.model_validate(body(middle)), settings)
            low = middle
        except ProblemError:
            high = middle
    return dict(body(low))


def dense_solver(n: int) -> dict[str, Any]:
    """rtol 1e-13 forces the dense eigensolver at any width."""
    return {
        "network": {"activation": "tanh", "init": {"widths": [n, n, 1], "scheme": "orthogonal"}},
        "inputs": {"count": 1},
        "options": {"rtol": 1e-13},
    }


def orthogonal_init(n: int) -> dict[str, Any]:
    """The orthogonal draw is a QR of an n × n matrix."""
    return {
        "network": {"activation": "tanh", "init": {"widths": [n, n, 1], "scheme": "orthogonal"}},
        "inputs": {"count": 1},
    }


def staller_bodies() -> list[bytes]:
    """The worst requests the default limits admit, as bodies."""
    settings = Settings()
    return [json.dumps(widest_admitted(make, settings)).encode() for make in (dense_solver, orthogonal_init)]


def _too_large_body() -> bytes:
    """A valid small request padded with spaces to just over MAX_BODY_BYTES."""
    body = json.dumps(SMALL).encode()
    return body[:-1] + b" " * (MAX_BODY_BYTES + 1 - len(body)) + b"}"


KINDS: dict[str, tuple[float, bytes]] = {
    "small": (0.85, json.dumps(SMALL).encode()),
    "heavy": (0.08, json.dumps(HEAVY).encode()),
    "too many parameters": (0.04, json.dumps(TOO_MANY_PARAMETERS).encode()),
    "body too large": (0.03, _too_large_body()),
}
"""Each kind of request: its share of the requests, and its body."""
OVER_LIMIT = {"body too large": {"413"}, "too many parameters": {"413", "503"}}
"""What each over-limit kind may be answered: a body whose Content-Length is over the limit is refused 413 before
it is read, whatever the load; a network too large shows only in the body, which a full queue refuses (503)
before reading."""


@dataclass
class Results:
    """What the clients and the health poller saw."""

    statuses: dict[str, Counter[str]] = field(default_factory=lambda: {kind: Counter() for kind in KINDS})
    small_ms: list[float] = field(default_factory=list)
    """Latency of every small request answered 200."""
    health: list[tuple[str, float]] = field(default_factory=list)
    """Each poll of /healthz: its status (or error) and its latency in seconds."""
    stalls: Counter[str] = field(default_factory=Counter)
    """The stallers' answers, by status."""
    memory: dict[str, int] = field(default_factory=dict)
    """Peak resident memory in bytes: of the server (VmHWM), of any one of its descendants (the fork server and
    the compute workers, VmHWM), and of all of them together (the largest sum of VmRSS sampled)."""
    sent: int = 0
    in_flight: dict[int, str] = field(default_factory=dict)
    """The kind of request each client is waiting on."""


async def _client(client: httpx.AsyncClient, seed: int, deadline: float, max_requests: int, results: Results) -> None:
    """Send requests of random kinds until the deadline or until ``max_requests`` have been sent in all."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    shares = [KINDS[k][0] for k in kinds]
    while time.monotonic() < deadline and results.sent < max_requests:
        results.sent += 1
        kind = rng.choices(kinds, shares)[0]
        results.in_flight[seed] = kind
        started = time.perf_counter()
        try:
            response = await client.post(
                "/v1/analyses", content=KINDS[kind][1], headers={"content-type": "application/json"}
            )
            status = str(response.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        results.statuses[kind][status] += 1
        del results.in_flight[seed]
        if kind == "small" and status == "200":
            results.small_ms.append((time.perf_counter() - started) * 1e3)


def _poll_health(url: str, seconds: float, connection: Connection) -> None:
    """In a process of its own: GET /healthz every POLL_S for ``seconds``, on one connection; send back the
    (status, latency) of each poll."""
    polls: list[tuple[str, float]] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=HEALTH_TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                status = str(client.get("/healthz").status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - started
            polls.append((status, elapsed))
            time.sleep(max(0.0, POLL_S - elapsed))
    connection.send(polls)


async def _stall(client: httpx.AsyncClient, bodies: list[bytes], deadline: float, results: Results) -> None:
    """Send the worst admissible requests, one after another, until the deadline."""
    i = 0
    while time.monotonic() < deadline:
        try:
            response = await client.post(
                "/v1/analyses", content=bodies[i % len(bodies)], headers={"content-type": "application/json"}
            )
            results.stalls[str(response.status_code)] += 1
        except httpx.HTTPError as exc:
            results.stalls[type(exc).__name__] += 1
        i += 1


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, their children, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _sample_memory(pid: int, stop: threading.Event, memory: dict[str, int]) -> None:
    """Every SAMPLE_S until ``stop``: the server's and its descendants' peaks (see ``Results.memory``)."""
    memory.update(server=0, descendant=0, total=0)
    while not stop.wait(SAMPLE_S):
        below = _descendants(pid)
        memory["server"] = max(memory["server"], _status_kib(pid, "VmHWM:"))
        memory["descendant"] = max([memory["descendant"], *(_status_kib(p, "VmHWM:") for p in below)])
        total = sum(_status_kib(p, "VmRSS:") for p in [pid, *below])
        memory["total"] = max(memory["total"], total)


async def run(url: str, pid: int, seconds: float, clients: int, stallers: int, max_requests: int) -> Results:
    """``clients`` concurrent clients and ``stallers`` stallers for ``seconds`` (plus at most GRACE_S for the
    requests in flight)."""
    results = Results()
    here, there = multiprocessing.Pipe(duplex=False)
    poller = multiprocessing.get_context("spawn").Process(target=_poll_health, args=(url, seconds, there))
    poller.start()
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_memory, args=(pid, stop, results.memory), daemon=True)
    sampler.start()
    bodies = staller_bodies()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + stallers, max_keepalive_connections=clients + stallers)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=seconds + 120.0) as client:
        tasks = [asyncio.create_task(_client(client, i, deadline, max_requests, results)) for i in range(clients)]
        # Each client's seed is its index, which also keys its request in flight.
        stalling = [asyncio.create_task(_stall(client, bodies, deadline, results)) for _ in range(stallers)]
        _, pending = await asyncio.wait(tasks, timeout=seconds + GRACE_S)
        for task in [*pending, *stalling]:
            task.cancel()  # a staller's request in flight is abandoned: its client goes, its worker is freed
        await asyncio.gather(*pending, *stalling, return_exceptions=True)
        for kind in results.in_flight.values():
            results.statuses[kind][CUT_OFF] += 1
    results.health = await asyncio.to_thread(here.recv)
    poller.join()
    stop.set()
    sampler.join()
    return results


def _percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1 ≤ q ≤ 99) of ``values``."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(results: Results, seconds: float, clients: int, stallers: int) -> bool:
    """Print the results; whether every verdict is "yes"."""
    codes = sorted({code for counts in results.statuses.values() for code, n in counts.items() if n})
    rows = [[kind, *(results.statuses[kind][code] for code in codes)] for kind in KINDS]
    rows.append(["all", *(sum(results.statuses[kind][code] for kind in KINDS) for code in codes)])
    print(
        f"{clients} loopback clients and {stallers} stallers for {seconds:g} s; "
        f"JACSPEC_MAX_BODY_BYTES = {MAX_BODY_BYTES // MIB} MiB"
    )
    print(table(["requests", *codes], rows))
    if CUT_OFF in codes:
        print(f"({CUT_OFF}: still waiting {GRACE_S:g} s after the end, not counted in the verdicts)")
    print(f"stallers' answers: {dict(results.stalls) or 'none before the end (abandoned in flight)'}")
    unexpected = [
        code
        for code in codes
        if code != CUT_OFF and not (code.isdigit() and (code.startswith("2") or int(code) in ACCEPTED))
    ]
    all_codes = [*(c for counts in results.statuses.values() for c, n in counts.items() for _ in range(n))]
    all_codes += [c for c, n in results.stalls.items() for _ in range(n)]
    errors = sum(c.isdigit() and c.startswith("5") and c != "503" for c in all_codes)
    unavailable = all_codes.count("503")
    health_ok = [status == "200" and latency <= HEALTH_TIMEOUT_S for status, latency in results.health]
    latencies = [latency for _, latency in results.health]
    slowest = max(latencies, default=float("nan"))
    refused = {kind: set(+results.statuses[kind]) - {CUT_OFF} <= allowed for kind, allowed in OVER_LIMIT.items()}
    verdicts = {
        "every response 2xx, 413, 429 or 503": not unexpected,
        "no 5xx but 503 (busy, with Retry-After)": errors == 0,
        "every body over JACSPEC_MAX_BODY_BYTES refused with 413": refused["body too large"],
        "every network over JACSPEC_MAX_PARAMETERS refused with 413 (503 while the queue was full)": refused[
            "too many parameters"
        ],
        "/healthz answered throughout": bool(health_ok) and all(health_ok),
        f"/healthz always within {HEALTH_GOAL_S * 1e3:.0f} ms": bool(latencies) and slowest < HEALTH_GOAL_S,
    }
    for name, ok in verdicts.items():
        print(f"{name}: {'yes' if ok else 'no'}")
    if unexpected:
        print(f"  unexpected: {', '.join(unexpected)}")
    print(f"  5xx: {errors} other than 503, {unavailable} × 503")
    print(f"  /healthz: {sum(health_ok)} of {len(health_ok)} polls (every {POLL_S * 1e3:.0f} ms, another process)")
    if latencies:
        p50, p99 = (_percentile(latencies, q) * 1e3 for q in (50, 99))
        print(f"  /healthz p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {slowest * 1e3:.0f} ms")
    memory = results.memory
    print(
        f"peak RSS: server {memory.get('server', 0) / MIB:.0f} MiB (VmHWM), largest compute worker or fork server "
        f"{memory.get('descendant', 0) / MIB:.0f} MiB (VmHWM), all together {memory.get('total', 0) / MIB:.0f} MiB "
        f"(sampled every {SAMPLE_S:g} s)"
    )
    small = results.small_ms
    if small:
        print(
            f"small requests answered 200: {len(small)}, "
            f"p50 {_percentile(small, 50):.1f} ms, p99 {_percentile(small, 99):.1f} ms"
        )
    else:
        print("small requests answered 200: none")
    return all(verdicts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients send (default 60)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--stallers", type=int, default=1, help="clients sending the worst requests (default 1)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="most requests in all (default 20000)")
    args = parser.parse_args()
    env = {"JACSPEC_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    with serve(JACSPEC, env, factory=True) as (url, pid):
        assert urlsplit(url).hostname == "127.0.0.1", "loopback only"
        results = asyncio.run(run(url, pid, args.seconds, args.clients, args.stallers, args.max_requests))
    if not report(results, args.seconds, args.clients, args.stallers):
        sys.exit(1)


if __name__ == "__main__":
    main()
