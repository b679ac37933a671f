"""The suggested gain in closed loop: tests/service/test_advice.py's recipes, each analysed, then analysed again
with its suggested gain; prints the table of outcomes (stable already, fixed, not fixed, made worse, no gain) and
the trials taken.

    python -m bench.suggestion
"""

from __future__ import annotations

import time
from collections import Counter

from tests.service.test_advice import CASES, _analysis


def main() -> None:
    outcomes: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    started = time.perf_counter()
    for activation, scheme, gain, width, depth in CASES:
        first = _analysis(activation, scheme, gain, width, depth).summary
        methods[str(first.suggestion)] += 1
        if first.suggested_gain is None:
            outcomes["no gain (remedy given)"] += 1
            continue
        again = _analysis(activation, scheme, first.suggested_gain, width, depth).summary
        if first.verdict == "stable":
            outcomes["stable, kept" if again.verdict == "stable" else "made worse"] += 1
        else:
            outcomes["fixed" if again.verdict == "stable" else "not fixed"] += 1
    print(f"{len(CASES)} recipes in {time.perf_counter() - started:.0f} s")
    for name in ("stable, kept", "fixed", "not fixed", "made worse", "no gain (remedy given)"):
        print(f"  {name:24} {outcomes[name]}")
    print("  by method: " + ", ".join(f"{k} {v}" for k, v in sorted(methods.items())))


if __name__ == "__main__":
    main()
