"""The ``jacspec`` command line.

    jacspec analyze spec.json                      # a whole AnalysisRequest body ("-" reads stdin)
    jacspec analyze --init widths=784,512,512,10 scheme=he_normal activation=relu gain=1.0
    jacspec analyze spec.json --json               # the report as JSON, for machines

Exit status: 0 on success, 1 when the server refuses the request or cannot be reached, 2 on bad arguments.
Every error is printed as one line per fault, naming the ``--init`` key, or the JSON pointer into the spec.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from jacspec._client import Client
from jacspec._exceptions import APIStatusError, JacspecError
from jacspec._text import counted
from jacspec.models import AnalysisReport, AnalysisRequest, InitRecipe, Network
from jacspec.models.network import InitSchemeName

PROG = "jacspec"
NETWORK_KEYS = ("activation", "output_activation")
INIT_KEYS: dict[str, str] = {
    "widths": "n_0,n_1,…,n_L: the input width, then each layer's",
    "scheme": "how the weights are drawn: " + ", ".join(get_args(InitSchemeName)),
    "gain": "multiplies the std of every scheme",
    "std": "the base std of gaussian and uniform, ignored by the others",
    "bias_std": "biases drawn from N(0, bias_std²); 0 means no biases",
    "seed": "seed of the generator that draws the weights",
    "activation": "every layer's activation: relu, tanh, gelu, … (GET /v1/activations lists them)",
    "output_activation": "the last layer's activation, when it differs from the others",
}
"""What each ``--init KEY=VALUE`` sets: the init recipe's fields, then the network's two activations."""


class UsageError(Exception):
    """Bad arguments or a spec the models refuse: one line per fault, exit status 2."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status is 0 on success, 1 on an API error, 2 on bad arguments."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.spec is None) == (args.init is None):
        args.analyze_parser.error("give a spec file or --init KEY=VALUE ..., not both")
    try:
        request = _request(args)
    except UsageError as exc:
        for line in exc.lines:
            _print_error(line)
        return 2
    try:
        with Client(base_url=args.base_url, api_key=args.api_key) as client:
            report = client.analyze(request.network, inputs=request.inputs, options=request.options)
    except APIStatusError as exc:
        _print_error(str(exc))
        for error in exc.errors:
            print(f"  {error.pointer or '/'}: {error.detail}", file=sys.stderr)
        return 1
    except JacspecError as exc:
        _print_error(str(exc))
        return 1
    print(report.model_dump_json(indent=2) if args.json else format_report(report))
    return 0


def _print_error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def init_keys_help() -> str:
    """The ``--init`` keys, one a line with its meaning and default, for ``--help``."""
    fields: dict[str, FieldInfo] = {**InitRecipe.model_fields, **Network.model_fields}
    lines = ["--init keys (KEY=VALUE):"]
    for key, meaning in INIT_KEYS.items():
        field = fields[key]
        if field.is_required():
            meaning += " (required)"
        elif field.default is not None:
            meaning += f" (default {field.default})"
        lines.append(f"  {key:<18} {meaning}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    epilog = init_keys_help()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Vanishing and exploding gradients, layer by layer.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--base-url", help="the server (default: $JACSPEC_BASE_URL, else http://127.0.0.1:8000)")
    parser.add_argument("--api-key", help="bearer key (default: $JACSPEC_API_KEY)")
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser(
        "analyze",
        help="analyse one network and print the per-layer report",
        description="Analyse one network, given as a spec file or as an init recipe, and print the report.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument("spec", nargs="?", help="a JSON AnalysisRequest body, or - for stdin")
    analyze.add_argument(
        "--init", nargs="+", metavar="KEY=VALUE", help="a network drawn from an init recipe instead of a spec"
    )
    analyze.add_argument("--json", action="store_true", help="print the report as JSON")
    analyze.set_defaults(analyze_parser=analyze)
    return parser


def _request(args: argparse.Namespace) -> AnalysisRequest:
    if args.spec is None:
        try:
            return AnalysisRequest.model_validate({"network": _init_network(args.init)})
        except ValidationError as exc:
            raise UsageError(*(f"--init {_init_key(error['loc'])}: {error['msg']}" for error in exc.errors())) from exc
    source = "stdin" if args.spec == "-" else args.spec
    try:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    try:
        return AnalysisRequest.model_validate_json(text)
    except ValidationError as exc:
        raise UsageError(*(f"{source}: {_pointer(error['loc'])}: {error['msg']}" for error in exc.errors())) from exc


def _init_network(pairs: Sequence[str]) -> dict[str, Any]:
    """``widths=784,512,10 scheme=he_normal activation=relu gain=1`` → a network with an init recipe.

    Values stay strings (``widths`` a list of them) for the models to convert, so that a bad one is reported with
    the model's own message."""
    network: dict[str, Any] = {}
    init: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--init takes KEY=VALUE pairs; got {pair!r}")
        if key not in INIT_KEYS:
            raise UsageError(f"--init: unknown key {key!r} (the keys: {', '.join(INIT_KEYS)})")
        target = network if key in NETWORK_KEYS else init
        if key in target:
            raise UsageError(f"--init: {key} is given twice")
        target[key] = value.split(",") if key == "widths" else value
    return {**network, "init": init}


def _init_key(loc: tuple[int | str, ...]) -> str:
    """The ``--init`` key a validation error is about: its location past ``network`` (and ``init``)."""
    path = [str(part) for part in loc[1:]]
    if path and path[0] == "init":
        path = path[1:]
    return path[0] if path else "(the recipe)"


def _pointer(loc: tuple[int | str, ...]) -> str:
    return "/" + "/".join(str(part) for part in loc)


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
    lines.append(
        f"input  bound 10^{_g(s.input_bound_log10)}, true 10^{_g(s.input_norm_log10)}  over {counted(s.depth, 'layer')}"
    )
    lines.append(f"verdict: {s.verdict} (bound: {s.bound_verdict})")
    lines.append(s.advice)
    return "\n".join(lines)


def _g(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    sys.exit(main())
