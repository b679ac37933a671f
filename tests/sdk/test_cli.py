"""``jacspec._cli.main``: the ``jacspec analyze`` command against a real ``python -m api`` server."""

from __future__ import annotations

import io
import json
import math
import re
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jacspec._client
from jacspec import AnalysisReport, AnalysisRequest
from jacspec._cli import main
from jacspec.models import InitRecipe

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "spec.json"
"""The sample spec of docs/sdk.md."""
INIT = ["--init", "widths=64,64,64,8", "scheme=orthogonal", "activation=tanh", "gain=0.5"]
ROW = re.compile(r"^\s*(\d+)\s+(\d+)×(\d+)\s+(\S+)\s+(\S+)")
"""A table row: j, the shape n_j×n_{j−1}, the activation, σ_j."""

WEIGHTS = [np.array([[1.0, 0.5], [-0.5, 1.0], [0.2, 0.1]]), np.array([[0.3, 0.7, -0.4]])]
SPEC: dict[str, Any] = {
    "network": {
        "activation": "tanh",
        "layers": [
            {"weight": WEIGHTS[0].tolist(), "bias": [0.0, 0.1, -0.1]},
            {"weight": WEIGHTS[1].tolist(), "activation": "linear"},
        ],
    },
    "inputs": {"data": [[1.0, -1.0], [0.5, 2.0]]},
}


def _rows(text: str) -> list[re.Match[str]]:
    return [m for line in text.splitlines() if (m := ROW.match(line))]


def _check_spec_report(out: str) -> None:
    report = AnalysisReport.model_validate_json(out)
    assert [layer.weight_norm for layer in report.layers] == pytest.approx(
        [float(np.linalg.norm(w, 2)) for w in WEIGHTS], rel=1e-12
    )
    assert [layer.activation for layer in report.layers] == ["tanh", "linear"]
    assert [layer.shape for layer in report.layers] == [[3, 2], [1, 3]]


def test_init_table(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--base-url", server_url, "analyze", *INIT]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert [int(m[1]) for m in rows] == [1, 2, 3]
    assert [(int(m[2]), int(m[3])) for m in rows] == [(64, 64), (64, 64), (8, 64)]
    assert [m[4] for m in rows] == ["tanh"] * 3
    assert [float(m[5]) for m in rows] == pytest.approx([0.5] * 3, rel=1e-4)  # printed to 4 significant digits
    verdicts = [line for line in out.splitlines() if line.startswith("verdict:")]
    assert len(verdicts) == 1
    assert re.fullmatch(r"verdict: (stable|vanishing|exploding) \(bound: (stable|vanishing|exploding)\)", verdicts[0])


def test_init_json(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--base-url", server_url, "analyze", *INIT, "--json"]) == 0
    report = AnalysisReport.model_validate_json(capsys.readouterr().out)
    assert [layer.weight_norm for layer in report.layers] == pytest.approx([0.5] * 3, rel=1e-12)
    assert [layer.shape for layer in report.layers] == [[64, 64], [64, 64], [8, 64]]
    assert report.summary.gain == 0.5
    assert report.summary.input_bound_log10 == pytest.approx(3 * math.log10(0.5), abs=1e-12)


def test_spec_file(server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(AnalysisRequest.model_validate(SPEC).model_dump_json())
    assert main(["--base-url", server_url, "analyze", str(spec), "--json"]) == 0
    _check_spec_report(capsys.readouterr().out)
    assert main(["--base-url", server_url, "analyze", str(spec)]) == 0
    assert [int(m[1]) for m in _rows(capsys.readouterr().out)] == [1, 2]


def _example_norms_log10(spec: dict[str, Any]) -> list[float]:
    """log10 max over the probes of ‖∂a_L/∂a_j‖₂ for j = 0 … L, by the chain rule in numpy: ∂a_L/∂a_{j−1} =
    ∂a_L/∂a_j · diag(h_j'(z_j)) · W_j, with tanh' = 1 − tanh² and linear' = 1."""
    layers = spec["network"]["layers"]
    norms = np.zeros(len(layers) + 1)
    for x in np.array(spec["inputs"]["data"]):
        a, derivatives = x, []
        for layer in layers:
            z = np.array(layer["weight"]) @ a + np.array(layer.get("bias", 0.0))
            tanh = layer.get("activation", spec["network"]["activation"]) == "tanh"
            a = np.tanh(z) if tanh else z
            derivatives.append(1.0 - a**2 if tanh else np.ones_like(z))
        jacobian = np.eye(len(a))
        norms[-1] = max(norms[-1], 1.0)
        for j in range(len(layers), 0, -1):
            jacobian = jacobian @ np.diag(derivatives[j - 1]) @ np.array(layers[j - 1]["weight"])
            norms[j - 1] = max(norms[j - 1], float(np.linalg.norm(jacobian, 2)))
    return [math.log10(n) for n in norms]


def test_the_sample_spec_of_the_docs(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/examples/spec.json through the CLI: σ_j against numpy's 2-norm, the bound ∏_{i>j} σ_i (tanh and
    linear have sup|h'| = 1) and the true norms against the chain rule written out above."""
    spec = json.loads(EXAMPLE.read_text())
    sigmas = [float(np.linalg.norm(np.array(layer["weight"]), 2)) for layer in spec["network"]["layers"]]
    assert main(["--base-url", server_url, "analyze", str(EXAMPLE), "--json"]) == 0
    report = AnalysisReport.model_validate_json(capsys.readouterr().out)
    assert [layer.activation for layer in report.layers] == ["tanh", "tanh", "linear"]
    assert [layer.shape for layer in report.layers] == [[4, 4], [4, 4], [2, 4]]
    assert [layer.weight_norm for layer in report.layers] == pytest.approx(sigmas, rel=1e-12)
    bounds = [sum(math.log10(s) for s in sigmas[j:]) for j in range(len(sigmas) + 1)]
    assert [report.summary.input_bound_log10, *(layer.backward_bound_log10 for layer in report.layers)] == (
        pytest.approx(bounds, abs=1e-12)
    )
    true = [report.summary.input_norm_log10, *(layer.backward_norm_log10 for layer in report.layers)]
    assert true == pytest.approx(_example_norms_log10(spec), abs=1e-9)  # the spec asks for rtol 1e-8

    assert main(["--base-url", server_url, "analyze", str(EXAMPLE)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [(int(m[1]), m[4]) for m in rows] == [(1, "tanh"), (2, "tanh"), (3, "linear")]
    assert [float(m[5]) for m in rows] == pytest.approx(sigmas, rel=1e-3)  # printed to 4 significant digits


def test_spec_stdin(server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(SPEC)))
    assert main(["--base-url", server_url, "analyze", "-", "--json"]) == 0
    _check_spec_report(capsys.readouterr().out)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="neither-spec-nor-init"),
        pytest.param(["spec.json", "--init", "widths=4,4", "scheme=orthogonal"], id="both"),
    ],
)
def test_spec_and_init_exclude_each_other(
    args: list[str], server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse's ``parser.error``: the usage, then the error; exit status 2, nothing sent."""
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    with pytest.raises(SystemExit) as info:
        main(["--base-url", server_url, "analyze", *[str(tmp_path / a) if a == "spec.json" else a for a in args]])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: jacspec analyze" in captured.err
    assert "error: give a spec file or --init" in captured.err


def _error_lines(err: str) -> list[str]:
    """stderr as lines, none of them a pydantic dump (its header, its input values, its links)."""
    assert "validation error" not in err
    assert "input_value" not in err
    assert "errors.pydantic.dev" not in err
    return err.splitlines()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        pytest.param(
            ["colour=red"],
            "jacspec: error: --init: unknown key 'colour' (the keys: widths, scheme, gain, std, bias_std, seed, "
            "activation, output_activation)",
            id="unknown-key",
        ),
        pytest.param(
            ["widths4,4"], "jacspec: error: --init takes KEY=VALUE pairs; got 'widths4,4'", id="not-key-value"
        ),
        pytest.param(["gain=2", "gain=3"], "jacspec: error: --init: gain is given twice", id="twice"),
        pytest.param(
            ["gain=-1"],
            "jacspec: error: --init gain: Input should be greater than 0",
            id="gain-not-positive",
        ),
        pytest.param(
            ["gain=1e-200"],
            "jacspec: error: --init gain: Value error, must be at least 1e-100, so that its square stays a normal"
            " float64",
            id="gain-below-the-floor",
        ),
        pytest.param(
            ["seed=x"],
            "jacspec: error: --init seed: Input should be a valid integer, unable to parse string as an integer",
            id="seed-not-integer",
        ),
    ],
)
def test_a_bad_init_key_or_value_is_one_line_naming_it(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything is sent (the base URL has no server): one line, exit status 2."""
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["--base-url", url, "analyze", "--init", "widths=4,4", "scheme=orthogonal", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _error_lines(captured.err) == [line]


def test_each_bad_init_value_gets_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["--base-url", url, "analyze", "--init", "widths=4,0", "scheme=no_such", "activation=nope"]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 3
    assert all(line.startswith("jacspec: error: --init ") for line in lines)
    assert [line.split()[3] for line in lines] == ["activation:", "widths:", "scheme:"]
    assert "greater than or equal to 1" in lines[1]
    assert "'orthogonal'" in lines[2]


def test_output_activation(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--init", "widths=16,16,4", "scheme=he_normal", "activation=relu", "output_activation=linear"]
    assert main(["--base-url", server_url, "analyze", *args, "--json"]) == 0
    report = AnalysisReport.model_validate_json(capsys.readouterr().out)
    assert [layer.activation for layer in report.layers] == ["relu", "linear"]


@pytest.mark.parametrize("command", [[], ["analyze"]])
def test_help_lists_every_init_key(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    described = {line.split()[0] for line in out.split("--init keys (KEY=VALUE):\n", 1)[1].splitlines() if line}
    assert described == set(InitRecipe.model_fields) | {"activation", "output_activation"}
    assert "  output_activation  the last layer's activation" in out
    assert "  gain               multiplies the std of every scheme (default 1.0)" in out
    assert "  widths             n_0,n_1,…,n_L: the input width, then each layer's (required)" in out


def test_invalid_spec_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"network": {"init": {"widths": [4, 0, 2], "scheme": "orthogonal"}}}))
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["--base-url", url, "analyze", str(spec)]) == 2
    assert _error_lines(capsys.readouterr().err) == [
        f"jacspec: error: {spec}: /network/init/widths/1: Input should be greater than or equal to 1"
    ]
    spec.write_text("{not json")
    assert main(["--base-url", url, "analyze", str(spec)]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith(f"jacspec: error: {spec}: /: Invalid JSON")
    missing = tmp_path / "missing.json"
    assert main(["--base-url", url, "analyze", str(missing)]) == 2
    expected = f"jacspec: error: cannot read {missing}: No such file or directory"
    assert _error_lines(capsys.readouterr().err) == [expected]


def test_api_error_returns_1(server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Valid for the models, refused by the server: the second weight does not chain onto the first."""
    spec = tmp_path / "spec.json"
    bad = {"network": {"layers": [{"weight": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}, {"weight": [[1.0, 2.0, 3.0]]}]}}
    spec.write_text(json.dumps(bad))
    AnalysisRequest.model_validate(bad)  # the client side accepts it
    assert main(["--base-url", server_url, "analyze", str(spec)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("jacspec: error: 422")
    assert "  /network/layers/1/weight: " in captured.err
    assert "chain" in captured.err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_returns_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Connection refused: the client's default 2 retries with backoff (sleeps recorded, not slept), then one line
    naming the URL tried, and exit status 1."""
    sleeps: list[float] = []
    monkeypatch.setattr("jacspec._client.time.sleep", sleeps.append)
    monkeypatch.delenv("JACSPEC_API_KEY", raising=False)
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["--base-url", url, "analyze", *INIT]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"jacspec: error: could not connect to {url}/v1/analyses: ")
    assert len(sleeps) == jacspec._client.DEFAULT_MAX_RETRIES == 2
    # 0.5·2^attempt s less up to 25% jitter
    assert 0.375 <= sleeps[0] <= 0.5
    assert 0.75 <= sleeps[1] <= 1.0
