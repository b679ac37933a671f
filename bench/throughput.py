"""Small analyses (3 layers × 64) per second from concurrent loopback clients, against a bare FastAPI endpoint
that parses the same body and answers a constant, each on its own uvicorn with one worker.

    python -m bench.throughput [--seconds 10] [--concurrency 16] [--server granian|uvicorn|both]

``python -m api`` serves with granian; ``--server both`` runs jacspec under each, for the comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from bench._servers import JACSPEC, serve
from bench._timing import table

BODY: dict[str, Any] = {
    "network": {"activation": "tanh", "init": {"widths": [64, 64, 64, 64], "scheme": "orthogonal", "gain": 0.9}},
    "inputs": {"count": 4},
}


async def _hammer(url: str, seconds: float, concurrency: int) -> tuple[int, int]:
    """(successful requests, failed requests) sent in ``seconds`` by ``concurrency`` loops."""
    done, failed = 0, 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def loop() -> None:
            nonlocal done, failed
            while time.monotonic() < deadline:
                response = await client.post(url, json=BODY)
                if response.status_code == 200:
                    done += 1
                else:
                    failed += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server", choices=["granian", "uvicorn", "both"], default="granian")
    args = parser.parse_args()
    servers = ["granian", "uvicorn"] if args.server == "both" else [args.server]
    rows = []
    runs = [(f"jacspec /v1/analyses ({server})", JACSPEC, True, "/v1/analyses", server) for server in servers]
    for name, app, factory, path, server in [
        *runs,
        ("bare FastAPI (uvicorn)", "bench._bare:app", False, "/bare", "uvicorn"),
    ]:
        with serve(app, factory=factory, server=server) as (url, _):
            asyncio.run(_hammer(url + path, 1.0, args.concurrency))  # warm up
            done, failed = asyncio.run(_hammer(url + path, args.seconds, args.concurrency))
        rows.append([name, done, failed, done / args.seconds])
    ratio = rows[0][3] / rows[-1][3]
    print(f"small requests for {args.seconds:g} s, {args.concurrency} concurrent loopback clients, one worker each")
    print(table(["server", "requests", "failed", "per s"], rows))
    print(f"jacspec / bare: {ratio:.2f}")


if __name__ == "__main__":
    main()
