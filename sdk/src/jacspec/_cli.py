"""The ``jacspec`` command line.

jacspec analyze spec.json                      # a whole AnalysisRequest body ("-" reads stdin)
jacspec analyze --init widths=784,512,512,10 scheme=he_normal activation=relu gain=1.0
jacspec analyze spec.json --json               # the report as JSON, for machines
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jacspec._client import Client
from jacspec._exceptions import APIStatusError, JacspecError
from jacspec.models import AnalysisReport, AnalysisRequest

INIT_NUMBERS = {"gain", "std", "bias_std"}
INIT_INTEGERS = {"seed"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status is 0 on success, 1 on an API error, 2 on bad arguments."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        request = _request(args)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    try:
        with Client(base_url=args.base_url, api_key=args.api_key) as client:
            report = client.analyze(request.network, inputs=request.inputs, options=request.options)
    except APIStatusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error.pointer or '/'}: {error.detail}", file=sys.stderr)
        return 1
    except JacspecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.model_dump_json(indent=2) if args.json else format_report(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jacspec", description="Vanishing and exploding gradients, layer by layer.")
    parser.add_argument("--base-url", help="the server (default: $JACSPEC_BASE_URL, else http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="bearer key (default: $JACSPEC_API_KEY)")
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser("analyze", help="analyse one network and print the per-layer report")
    analyze.add_argument("spec", nargs="?", help="a JSON AnalysisRequest body, or - for stdin")
    analyze.add_argument("--init", nargs="+", metavar="KEY=VALUE", help="a random-init network instead of a spec")
    analyze.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _request(args: argparse.Namespace) -> AnalysisRequest:
    if (args.spec is None) == (args.init is None):
        raise ValueError("give a spec file or --init KEY=VALUE ..., not both")
    if args.spec is not None:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
        return AnalysisRequest.model_validate_json(text)
    return AnalysisRequest.model_validate({"network": _init_network(args.init)})


def _init_network(pairs: Sequence[str]) -> dict[str, Any]:
    """``widths=784,512,10 scheme=he_normal activation=relu gain=1`` → a network with an init recipe."""
    network: dict[str, Any] = {}
    init: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--init takes KEY=VALUE pairs; got {pair!r}")
        if key == "widths":
            init["widths"] = [int(width) for width in value.split(",")]
        elif key in INIT_NUMBERS:
            init[key] = float(value)
        elif key in INIT_INTEGERS:
            init[key] = int(value)
        elif key in {"activation", "output_activation"}:
            network[key] = value
        else:
            init[key] = value
    return {**network, "init": init}


def format_report(report: AnalysisReport) -> str:
    """The per-layer table, then the verdict and the advice."""
    header = f"{'j':>4} {'shape':>12} {'activation':<11} {'σ_j':>10} {'sup|h′|':>8} {'‖J_j‖':>10} "
    header += f"{'bound log10':>12} {'true log10':>11} {'‖∂ℓ/∂W_j‖':>11}"
    lines = [header]
    for layer in report.layers:
        shape = "×".join(str(n) for n in layer.shape)
        lines.append(
            f"{layer.index:>4} {shape:>12} {layer.activation:<11} {layer.weight_norm:>10.4g} "
            f"{layer.derivative_bound:>8.4g} {_g(layer.jacobian_norm):>10} {_g(layer.backward_bound_log10):>12} "
            f"{_g(layer.backward_norm_log10):>11} {_g(layer.gradient_norm):>11}"
        )
    s = report.summary
    lines.append("")
    lines.append(f"input  bound 10^{_g(s.input_bound_log10)}, true 10^{_g(s.input_norm_log10)}  over {s.depth} layers")
    lines.append(f"verdict: {s.verdict} (bound: {s.bound_verdict})")
    lines.append(s.advice)
    return "\n".join(lines)


def _g(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    sys.exit(main())
