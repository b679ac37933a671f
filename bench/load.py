"""Load: concurrent loopback clients mixing small, heavy and over-limit requests for a bounded time, while
/healthz is polled every second; then whether the server held up.

    python -m bench.load [--seconds 60] [--clients 50] [--max-requests 20000]

Each client sends, at random (seeded): mostly small analyses (an init recipe of 3 layers × 64), sometimes a heavy
one (20 layers × 1024 → 10, about 4·10¹⁰ estimated flops), and now and then one over a limit that must be
refused: a body over JACSPEC_MAX_BODY_BYTES (set to 8 MiB here) with 413, whatever the load, and an init recipe of
10¹⁰ parameters with 413, or 503 when the compute queue is full (which is checked before a body is read). Every
answer must be 2xx, 413, 429 or 503; /healthz must answer 200 within a second at every poll. The
script prints the counts by kind and status, those verdicts, the server's peak RSS (VmHWM) and the latency of
the small requests, and exits 1 if a verdict is "no".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench._servers import JACSPEC, peak_rss, serve
from bench._timing import table

MIB = 2**20
MAX_BODY_BYTES = 8 * MIB
ACCEPTED = {413, 429, 503}
"""Besides 2xx: what a loaded server may answer."""
HEALTH_TIMEOUT_S = 1.0
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


async def _poll_health(url: str, stop: asyncio.Event, results: Results) -> None:
    """GET /healthz once a second, on its own connection, until ``stop`` is set."""
    async with httpx.AsyncClient(base_url=url, timeout=HEALTH_TIMEOUT_S) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = str((await client.get("/healthz")).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            results.health.append((status, time.perf_counter() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, 1.0 - (time.perf_counter() - started)))


async def run(url: str, seconds: float, clients: int, max_requests: int) -> Results:
    """``clients`` concurrent clients for ``seconds`` (plus at most GRACE_S for the requests in flight)."""
    results = Results()
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll_health(url, stop, results))
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=seconds + 60.0) as client:
        tasks = [asyncio.create_task(_client(client, i, deadline, max_requests, results)) for i in range(clients)]
        # Each client's seed is its index, which also keys its request in flight.
        _, pending = await asyncio.wait(tasks, timeout=seconds + GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for kind in results.in_flight.values():
            results.statuses[kind][CUT_OFF] += 1
    stop.set()
    await poller
    return results


def _percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1 ≤ q ≤ 99) of ``values``."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(results: Results, seconds: float, clients: int, rss: int) -> bool:
    """Print the results; whether every verdict is "yes"."""
    codes = sorted({code for counts in results.statuses.values() for code, n in counts.items() if n})
    rows = [[kind, *(results.statuses[kind][code] for code in codes)] for kind in KINDS]
    rows.append(["all", *(sum(results.statuses[kind][code] for kind in KINDS) for code in codes)])
    print(f"{clients} loopback clients for {seconds:g} s; JACSPEC_MAX_BODY_BYTES = {MAX_BODY_BYTES // MIB} MiB")
    print(table(["requests", *codes], rows))
    if CUT_OFF in codes:
        print(f"({CUT_OFF}: still waiting {GRACE_S:g} s after the end, not counted in the verdicts)")
    unexpected = [
        code
        for code in codes
        if code != CUT_OFF and not (code.isdigit() and (code.startswith("2") or int(code) in ACCEPTED))
    ]
    health_ok = [status == "200" and latency <= HEALTH_TIMEOUT_S for status, latency in results.health]
    slowest = max((latency for _, latency in results.health), default=float("nan"))
    refused = {kind: set(+results.statuses[kind]) - {CUT_OFF} <= allowed for kind, allowed in OVER_LIMIT.items()}
    verdicts = {
        "every response 2xx, 413, 429 or 503": not unexpected,
        "every body over JACSPEC_MAX_BODY_BYTES refused with 413": refused["body too large"],
        "every network over JACSPEC_MAX_PARAMETERS refused with 413 (503 while the queue was full)": refused[
            "too many parameters"
        ],
        "/healthz answered throughout": bool(health_ok) and all(health_ok),
    }
    for name, ok in verdicts.items():
        print(f"{name}: {'yes' if ok else 'no'}")
    if unexpected:
        print(f"  unexpected: {', '.join(unexpected)}")
    print(f"  /healthz: {sum(health_ok)} of {len(health_ok)} polls answered 200 within {HEALTH_TIMEOUT_S:g} s")
    print(f"  slowest /healthz: {slowest * 1e3:.0f} ms")
    print(f"server peak RSS (VmHWM): {rss / MIB:.0f} MiB")
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
    parser.add_argument("--max-requests", type=int, default=20_000, help="most requests in all (default 20000)")
    args = parser.parse_args()
    env = {"JACSPEC_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    with serve(JACSPEC, env, factory=True) as (url, pid):
        assert urlsplit(url).hostname == "127.0.0.1", "loopback only"
        results = asyncio.run(run(url, args.seconds, args.clients, args.max_requests))
        rss = peak_rss(pid)
    if not report(results, args.seconds, args.clients, rss):
        sys.exit(1)


if __name__ == "__main__":
    main()
