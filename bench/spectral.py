"""One layer's spectral norm: our engine against ``np.linalg.norm(W, 2)`` (a dense SVD), n = 1024, 2048, 4096.

python -m bench.spectral [--rtol 1e-6] [--repeats 3]
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np

from bench._timing import best_of, table
from service.spectral import spectral_norm


def _dense_norm(w: np.ndarray) -> float:
    return float(np.linalg.norm(w, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        w = rng.standard_normal((n, n)) / np.sqrt(n)
        ours, result = best_of(args.repeats, partial(spectral_norm, w, args.rtol))
        baseline, exact = best_of(1 if n > 2048 else args.repeats, partial(_dense_norm, w))
        error = abs(result.value - exact) / exact
        rows.append([n, result.method, result.matvecs, ours, baseline, baseline / ours, f"{error:.1e}"])
    header = ["n", "method", "matvecs", "ours s", "dense s", "speed-up", "rel error"]
    print(f"spectral norm of an n×n Gaussian matrix, rtol = {args.rtol:g}")
    print(table(header, rows))


if __name__ == "__main__":
    main()
