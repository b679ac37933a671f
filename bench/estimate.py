"""The work estimate against the time it predicts: random admissible requests over every feature, each analysed
in-process (api.work.analyse_request, on one thread, as one worker computes it), its measured seconds against its
estimate (service.cost, through api.sizes).

    python -m bench.estimate [--count 220] [--near 8] [--seed 0] [--out estimate.jsonl]

Requests are drawn until their estimate is between --low and --high seconds (SECONDS_PER_FLOP), so that most run
in 0.01–2 s; ``--near`` more are drawn near JACSPEC_MAX_FLOPS (half to all of it) to find the slowest admitted at
the default limits. Each is analysed with the suggested gain's trials the server would give it (api.work.trials_left:
what JACSPEC_MAX_FLOPS leaves), and its estimate is the analysis's flops plus the trials that ran, each
WorkEstimate.trial_flops (the trials are data-dependent: the search stops when one lands near its target). Reported:
the spread of measured seconds per estimated flop (goal: max/min within 10×), its median (the calibration of
SECONDS_PER_FLOP), the median by feature, and the slowest request admitted.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, get_args

import numpy as np
from threadpoolctl import threadpool_limits

from api.problems import ProblemError
from api.settings import Settings
from api.sizes import checked_size
from api.work import analyse_request, trials_left
from jacspec.models import AnalysisRequest, InitSchemeName
from service import analysis
from service.cost import SECONDS_PER_FLOP, WorkEstimate

SCHEMES = get_args(InitSchemeName)
ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "gelu", "softplus", "leaky_relu", "elu")
RTOLS = (1e-2, 1e-4, 1e-6, 1e-6, 1e-9, 1e-12, 1e-13)
SPECTRA = ("none", "none", "summary", "full")

Body = dict[str, Any]


def _log_int(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer drawn log-uniformly from [low, high]."""
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def _tensor(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> Any:
    """A random tensor as b64 bytes (FP32 or FP64), or for small ones as nested lists."""
    values = rng.standard_normal(shape) * scale
    if values.size <= 256 and len(shape) == 2 and rng.random() < 0.5:
        return values.tolist()
    datatype = "FP32" if rng.random() < 0.5 else "FP64"
    raw = values.astype("<f4" if datatype == "FP32" else "<f8").tobytes()
    return {"shape": list(shape), "datatype": datatype, "b64": base64.b64encode(raw).decode()}


def _init(rng: np.random.Generator) -> tuple[str, Body]:
    depth = _log_int(rng, 1, 40)
    width = _log_int(rng, 4, 2048)
    widths = [_log_int(rng, 2, 1024)] + [width] * depth
    if rng.random() < 0.5:
        widths[-1] = _log_int(rng, 1, 64)
    init = {"widths": widths, "scheme": str(rng.choice(SCHEMES)), "bias_std": float(rng.choice([0.0, 0.1]))}
    return "init", {"activation": str(rng.choice(ACTIVATIONS)), "init": init}


def _explicit(rng: np.random.Generator) -> tuple[str, Body]:
    depth = _log_int(rng, 1, 12)
    width = _log_int(rng, 2, 768)
    residual = rng.random() < 0.4
    layers = []
    n = width
    for _ in range(depth):
        layer: Body = {"weight": _tensor(rng, (width, n), 1.0 / math.sqrt(n))}
        if rng.random() < 0.5:
            layer["bias"] = rng.standard_normal(width).tolist()
        if residual:
            if n == width and rng.random() < 0.7:
                layer["residual"] = True
            else:
                layer["projection"] = _tensor(rng, (width, n), 1.0 / math.sqrt(n))
        layers.append(layer)
        n = width
    return ("residual" if residual else "explicit"), {"activation": str(rng.choice(ACTIVATIONS)), "layers": layers}


def _conv(rng: np.random.Generator) -> tuple[str, Body]:
    channels = _log_int(rng, 1, 16)
    kernel = int(rng.choice([1, 3, 5]))
    side = _log_int(rng, max(4, kernel), 24)
    padding = str(rng.choice(["zeros", "circular"]))
    residual = rng.random() < 0.4
    layers = []
    for _ in range(_log_int(rng, 1, 8)):
        k = _tensor(rng, (channels, channels, kernel, kernel), 1.0 / (channels * kernel))
        layer: Body = {"type": "conv2d", "kernel": k, "input_size": [side, side], "padding": padding}
        if residual:
            layer["residual"] = True
        layers.append(layer)
    return f"conv-{padding}", {"activation": str(rng.choice(ACTIVATIONS)), "layers": layers}


def _recurrent(rng: np.random.Generator) -> tuple[str, Body]:
    n = _log_int(rng, 2, 768)
    n_in = _log_int(rng, 1, 64)
    steps = _log_int(rng, 1, 60)
    recurrent: Body = {"activation": str(rng.choice(["tanh", "relu", "linear"])), "steps": steps}
    if rng.random() < 0.5:
        recurrent["init"] = {"hidden_size": n, "input_size": n_in, "scheme": str(rng.choice(SCHEMES))}
        return "recurrent-init", {"recurrent": recurrent}
    recurrent["weight"] = _tensor(rng, (n, n), 0.9 / math.sqrt(n))
    recurrent["input_weight"] = _tensor(rng, (n, n_in), 1.0 / math.sqrt(n_in))
    return "recurrent", {"recurrent": recurrent}


KINDS: tuple[Callable[[np.random.Generator], tuple[str, Body]], ...] = (_init, _init, _explicit, _conv, _recurrent)


def draw(rng: np.random.Generator) -> tuple[str, Body]:
    """One random request, by kind: its network, probes and options."""
    kind, network = KINDS[int(rng.integers(len(KINDS)))](rng)
    count = _log_int(rng, 1, 96)
    inputs: Body = {"count": count, "seed": int(rng.integers(1000))}
    options = {"rtol": float(rng.choice(RTOLS)), "spectrum": str(rng.choice(SPECTRA))}
    return kind, {"network": network, "inputs": inputs, "options": options}


def admissible(
    rng: np.random.Generator, settings: Settings, low: float, high: float, tries: int = 2000
) -> tuple[str, AnalysisRequest, WorkEstimate]:
    """A request admitted at ``settings`` whose estimate is between ``low`` and ``high`` seconds."""
    for _ in range(tries):
        kind, body = draw(rng)
        try:
            request = AnalysisRequest.model_validate(body)
            work = checked_size(request, settings)
        except (ProblemError, ValueError):
            continue
        if low <= work.seconds <= high:
            return kind, request, work
    raise RuntimeError(f"no admissible request within [{low}, {high}] s in {tries} tries")


def features(kind: str, request: AnalysisRequest) -> list[str]:
    """What a request exercises, for the breakdown by feature."""
    options = request.options
    names = [kind, f"spectrum={options.spectrum}", f"rtol={options.rtol:g}"]
    if request.network.init is not None:
        names.append(f"scheme={request.network.init.scheme}")
    names.append("probes≥8" if request.inputs.count >= 8 else "probes<8")
    return names


def measure(request: AnalysisRequest, trials: int) -> tuple[float, int]:
    """Seconds of decoding, building and analysing (analyse_request with ``trials``, as a compute worker runs it),
    and the suggested gain's trials that ran (service.analysis.trial_growth, counted)."""
    ran = [0]
    growth = analysis.trial_growth

    def counted(*args: Any) -> float:
        ran[0] += 1
        return growth(*args)

    analysis.trial_growth = counted  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        analyse_request(request, trials)
        return time.perf_counter() - started, ran[0]
    finally:
        analysis.trial_growth = growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=220)
    parser.add_argument("--near", type=int, default=8, help="requests drawn near JACSPEC_MAX_FLOPS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--low", type=float, default=0.01)
    parser.add_argument("--high", type=float, default=1.5)
    parser.add_argument("--out", default=None, help="one JSON line per request")
    args = parser.parse_args()
    settings = Settings()
    rng = np.random.default_rng(args.seed)
    rows = []
    out = open(args.out, "w") if args.out else None  # noqa: SIM115
    near = settings.max_flops * SECONDS_PER_FLOP
    plan = [(args.low, args.high)] * args.count + [(near / 2, near)] * args.near
    with threadpool_limits(1):
        for low, high in plan:
            kind, request, work = admissible(rng, settings, low, high)
            seconds, ran = measure(request, trials_left(work, settings))
            flops = work.flops + ran * work.trial_flops
            row = {"kind": kind, "features": features(kind, request), "flops": flops, "seconds": seconds}
            row["trials"] = ran
            row["ratio"] = seconds / flops
            row["body"] = _describe(request)
            rows.append(row)
            if out is not None:
                out.write(json.dumps(row) + "\n")
                out.flush()
    report(rows, settings)


def _describe(request: AnalysisRequest) -> str:
    """A short description of a request (its network's sizes and options), for the report."""
    network = request.network
    if network.init is not None:
        w = network.init.widths
        shape = f"init {network.init.scheme} {w[0]}→{w[1]}×{len(w) - 2}→{w[-1]}" if len(w) > 2 else f"init {w}"
    elif network.recurrent is not None:
        shape = f"recurrent T={network.recurrent.steps}"
    else:
        layers = network.layers or []
        shape = f"{len(layers)} explicit layers"
    options = request.options
    return f"{shape}, {request.inputs.count} probes, rtol {options.rtol:g}, spectrum {options.spectrum}"


def report(rows: list[dict[str, Any]], settings: Settings) -> None:
    """The spread of seconds per estimated flop, by feature, and the slowest admitted request."""
    ratios = sorted(row["ratio"] for row in rows)
    median = statistics.median(ratios)
    print(f"{len(rows)} requests; measured seconds per estimated flop (SECONDS_PER_FLOP = {SECONDS_PER_FLOP:.3g}):")
    print(
        f"  min {ratios[0]:.3g}  p5 {_q(ratios, 0.05):.3g}  median {median:.3g}  p95 {_q(ratios, 0.95):.3g}  "
        f"max {ratios[-1]:.3g}  max/min {ratios[-1] / ratios[0]:.3g}  p95/p5 {_q(ratios, 0.95) / _q(ratios, 0.05):.3g}"
    )
    groups: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for name in row["features"]:
            groups[name].append(row["ratio"])
    print("median ratio / overall median, by feature (n):")
    for name in sorted(groups):
        values = groups[name]
        print(
            f"  {name:24s} {statistics.median(values) / median:6.2f}  "
            f"[{min(values) / median:.2f}, {max(values) / median:.2f}]  ({len(values)})"
        )
    extremes = (("lowest", min(rows, key=lambda r: r["ratio"])), ("highest", max(rows, key=lambda r: r["ratio"])))
    for label, row in extremes:
        print(f"{label} ratio: {row['ratio'] / median:.2f}× median: {row['body']} ({row['seconds']:.3f} s)")
    slowest = max(rows, key=lambda r: r["seconds"])
    print(
        f"slowest admitted: {slowest['seconds']:.2f} s, estimated {slowest['flops']:.3g} flops "
        f"(limit {settings.max_flops:.3g}): {slowest['body']}"
    )
    print(f"worst case at the limit: {settings.max_flops * ratios[-1]:.1f} s (JACSPEC_MAX_FLOPS × max ratio)")
    print(f"total measured: {sum(r['seconds'] for r in rows):.1f} s; cores {os.cpu_count()}")


def _q(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


if __name__ == "__main__":
    main()
