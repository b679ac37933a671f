"""Peak resident memory of a running server through the `analysis` case (50 tanh layers of width 1024, a 10-wide
output, 4 probes, weights drawn by the server), against the bytes of those weights as float64.

    python -m bench.memory [--depth 50] [--width 1024]

With ``--bodies``: the server's peak memory above its idle level through large `b64` JSON bodies (one FP32 weight
of ``--side``² values, about 200 MB of base64 by default), each case on a fresh ``python -m api``-like granian
server: one body read, parsed and then refused 413 for its work (JACSPEC_MAX_PARAMETERS lowered to make it so);
one refused 413 for its size (JACSPEC_MAX_BODY_BYTES lowered below it), sent with a Content-Length and sent
chunked; and ``--concurrent`` such bodies at once. Each case runs with JACSPEC_BODY_BUDGET_BYTES at its default
(``after``) and at 1 TiB, which admits everything as the server did before the budget (``before``).

    python -m bench.memory --bodies [--side 6120] [--concurrent 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx

from api.settings import Settings
from bench._servers import JACSPEC, peak_rss, serve
from bench._timing import table

MIB = 2**20
UNBOUNDED = str(2**40)
"""A body budget that admits every body: the server as it was before the budget."""
CHUNK = MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--bodies", action="store_true", help="peak memory through large bodies instead")
    parser.add_argument("--side", type=int, default=6120, help="--bodies: the weight is side × side FP32")
    parser.add_argument("--concurrent", type=int, default=8, help="--bodies: bodies sent at once")
    args = parser.parse_args()
    if args.bodies:
        bodies(args.side, args.concurrent)
        return
    widths = [args.width] * args.depth + [10]
    body = {
        "network": {"activation": "tanh", "init": {"widths": widths, "scheme": "xavier_normal"}},
        "inputs": {"count": 4},
    }
    weights = sum(a * b for a, b in itertools.pairwise(widths)) * 8
    with serve(JACSPEC, factory=True) as (url, pid):
        idle = peak_rss(pid)
        response = httpx.post(url + "/v1/analyses", json=body, timeout=600.0)
        response.raise_for_status()
        peak = peak_rss(pid)
    budget = 3 * weights + 300 * MIB
    rows = [[f"{weights / MIB:.0f}", f"{idle / MIB:.0f}", f"{peak / MIB:.0f}", f"{budget / MIB:.0f}", peak / weights]]
    print(f"server peak RSS through one analysis: tanh {args.width}×{args.depth} → 10, 4 probes (MiB)")
    print(table(["weights", "idle RSS", "peak RSS", "3×weights+300", "peak/weights"], rows))


def b64_body(side: int) -> bytes:
    """An analysis of one side × side FP32 weight sent as `b64` (all zeros), ready to post."""
    encoded = b"A" * (4 * -(-4 * side * side // 3))
    network = {"layers": [{"weight": {"shape": [side, side], "datatype": "FP32", "b64": "@"}}]}
    head, tail = json.dumps({"network": network, "inputs": {"count": 1}}).encode().split(b'"@"')
    return head + b'"' + encoded + b'"' + tail


def chunks(body: bytes) -> Iterator[bytes]:
    """``body`` in CHUNK-sized pieces: sent so, httpx declares no length and the body goes chunked."""
    view = memoryview(body)
    for start in range(0, len(body), CHUNK):
        yield bytes(view[start : start + CHUNK])


def post(url: str, body: bytes, chunked: bool = False) -> int:
    """POST ``body`` to /v1/analyses; the status (0 when the server closed the connection mid-body)."""
    content = chunks(body) if chunked else body
    headers = {"Content-Type": "application/json"}
    try:
        return httpx.post(url + "/v1/analyses", content=content, headers=headers, timeout=600.0).status_code
    except httpx.TransportError:
        return 0


def peak_above_idle(env: dict[str, str], body: bytes, count: int = 1, chunked: bool = False) -> tuple[int, str]:
    """The server's peak RSS above its idle peak through ``count`` posts of ``body`` at once, and their statuses."""
    with serve(JACSPEC, env={"JACSPEC_MAX_PARAMETERS": "1000", **env}, factory=True, server="granian") as (url, pid):
        idle = peak_rss(pid)
        with ThreadPoolExecutor(count) as pool:
            statuses = Counter(pool.map(lambda _: post(url, body, chunked), range(count)))
        peak = peak_rss(pid)
    return peak - idle, " ".join(f"{n}×{status}" for status, n in sorted(statuses.items()))


def bodies(side: int, concurrent: int) -> None:
    """Print the peak memory above idle through each case of large bodies, before and after the budget."""
    body = b64_body(side)
    small_limit = {"JACSPEC_MAX_BODY_BYTES": str(len(body) // 2)}
    cases = [
        ("read, parsed, 413 for its work", {}, 1, False),
        ("413 for its size (Content-Length)", small_limit, 1, False),
        ("413 for its size (chunked)", small_limit, 1, True),
        (f"{concurrent} at once", {}, concurrent, False),
    ]
    rows = []
    for name, env, count, chunked in cases:
        for label, budget in (("before", UNBOUNDED), ("after", str(Settings().body_budget_bytes))):
            above, statuses = peak_above_idle({**env, "JACSPEC_BODY_BUDGET_BYTES": budget}, body, count, chunked)
            rows.append([name, label, statuses, f"{above / MIB:.0f}", f"{above / len(body):.2f}"])
    print(f"server peak RSS above idle through b64 bodies of {len(body) / MIB:.0f} MiB ({side}² FP32)")
    print(table(["case", "budget", "statuses", "peak − idle (MiB)", "× body"], rows))


if __name__ == "__main__":
    main()
