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


def test_spec_stdin(server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(SPEC)))
    assert main(["--base-url", server_url, "analyze", "-", "--json"]) == 0
    _check_spec_report(capsys.readouterr().out)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--init", "widths=0,4", "scheme=orthogonal"], id="init-width-0"),
        pytest.param(["--init", "widths=4,4", "scheme=no_such_scheme"], id="init-unknown-scheme"),
        pytest.param(["--init", "widths4,4"], id="init-not-key-value"),
        pytest.param([], id="neither-spec-nor-init"),
        pytest.param(["spec.json", "--init", "widths=4,4", "scheme=orthogonal"], id="both"),
    ],
)
def test_invalid_arguments_exit_2(
    args: list[str], server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments and specs the models refuse: argparse's ``parser.error``, exit status 2, nothing sent."""
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    with pytest.raises(SystemExit) as info:
        main(["--base-url", server_url, "analyze", *[str(tmp_path / a) if a == "spec.json" else a for a in args]])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: jacspec" in captured.err
    assert "error:" in captured.err


def test_invalid_spec_file_exit_2(server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"network": {"init": {"widths": [4, 0, 2], "scheme": "orthogonal"}}}))
    with pytest.raises(SystemExit) as info:
        main(["--base-url", server_url, "analyze", str(spec)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "widths" in err
    with pytest.raises(SystemExit) as missing:
        main(["--base-url", server_url, "analyze", str(tmp_path / "missing.json")])
    assert missing.value.code == 2
    assert "missing.json" in capsys.readouterr().err


def test_api_error_returns_1(server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Valid for the models, refused by the server: the second weight does not chain onto the first."""
    spec = tmp_path / "spec.json"
    bad = {"network": {"layers": [{"weight": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}, {"weight": [[1.0, 2.0, 3.0]]}]}}
    spec.write_text(json.dumps(bad))
    AnalysisRequest.model_validate(bad)  # the client side accepts it
    assert main(["--base-url", server_url, "analyze", str(spec)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: 422")
    assert "  /network/layers/1/weight: " in captured.err
    assert "chain" in captured.err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_returns_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Connection refused: the client's default 2 retries with backoff (sleeps recorded, not slept), then 1."""
    sleeps: list[float] = []
    monkeypatch.setattr("jacspec._client.time.sleep", sleeps.append)
    monkeypatch.delenv("JACSPEC_API_KEY", raising=False)
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["--base-url", url, "analyze", *INIT]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: could not connect")
    assert len(sleeps) == jacspec._client.DEFAULT_MAX_RETRIES == 2
    # 0.5·2^attempt s less up to 25% jitter
    assert 0.375 <= sleeps[0] <= 0.5
    assert 0.75 <= sleeps[1] <= 1.0
