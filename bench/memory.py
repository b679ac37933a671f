"""Peak resident memory of a running server through the `analysis` case (50 tanh layers of width 1024, a 10-wide
output, 4 probes, weights drawn by the server), against the bytes of those weights as float64.

    python -m bench.memory [--depth 50] [--width 1024]
"""

from __future__ import annotations

import argparse
import itertools

import httpx

from bench._servers import JACSPEC, peak_rss, serve
from bench._timing import table

MIB = 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
