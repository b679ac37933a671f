"""``AnalysisReport.to_dataframe()`` (pandas) and ``AnalysisReport.plot()`` (matplotlib, Agg) on a real report."""

from __future__ import annotations

import math
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install 'jacspec[pandas]')")
matplotlib = pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'jacspec[plot]')")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import jacspec  # noqa: E402
from jacspec import AnalysisReport  # noqa: E402

pytestmark = pytest.mark.anyio

DEPTH = 20
GAIN = 0.7
NETWORK = {"activation": "tanh", "init": {"widths": [32] * (DEPTH + 1), "scheme": "orthogonal", "gain": GAIN}}
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
async def report(client: httpx.AsyncClient) -> AnalysisReport:
    sdk = jacspec.AsyncClient(base_url="http://jacspec.test", http_client=client)
    report = await sdk.analyze(NETWORK, inputs={"count": 8})
    # the report itself, against the closed form: orthogonal weights have σ_j = gain exactly
    assert len(report.layers) == DEPTH
    assert report.summary.input_bound_log10 == pytest.approx(DEPTH * math.log10(GAIN), abs=1e-10)
    return report


async def test_to_dataframe(report: AnalysisReport) -> None:
    frame = report.to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert frame.index.name == "index"
    assert list(frame.index) == list(range(1, DEPTH + 1))
    assert {"weight_norm", "backward_bound_log10", "backward_norm_log10", "gradient_norm", "flags"} <= set(
        frame.columns
    )
    assert len(frame) == DEPTH
    for layer in report.layers:
        row = frame.loc[layer.index]
        assert row["weight_norm"] == layer.weight_norm
        assert row["backward_bound_log10"] == layer.backward_bound_log10
        assert row["backward_norm_log10"] == layer.backward_norm_log10
        assert row["activation"] == "tanh"
        assert list(row["shape"]) == [32, 32]
    # independently: σ_j = 0.7 and the bound on ‖∂a_L/∂a_j‖ is 0.7^(L−j)
    np.testing.assert_allclose(frame["weight_norm"].to_numpy(), GAIN, rtol=1e-12)
    expected = [(DEPTH - j) * math.log10(GAIN) for j in range(1, DEPTH + 1)]
    np.testing.assert_allclose(frame["backward_bound_log10"].to_numpy(), expected, rtol=0, atol=1e-10)
    # the nested mean-field fields are flattened: tanh at σ_w = gain 0.7, σ_b = 0 settles at q* = 0, χ₁ = 0.49
    assert "meanfield" not in frame.columns
    np.testing.assert_allclose(frame["meanfield.chi1"].to_numpy(), GAIN**2, rtol=1e-12)
    assert list(frame["meanfield.flags"]) == [[]] * DEPTH


async def test_plot(report: AnalysisReport) -> None:
    ax = report.plot()
    try:
        lines = ax.get_lines()
        data_lines = [line for line in lines if np.size(line.get_xdata()) == DEPTH + 1]  # not the axhline at 0
        assert len(data_lines) == 2
        bound, norm = data_lines
        expected_x = list(range(DEPTH + 1))
        assert list(bound.get_xdata()) == expected_x
        assert list(norm.get_xdata()) == expected_x
        s = report.summary
        expected_bound = [s.input_bound_log10, *(layer.backward_bound_log10 for layer in report.layers)]
        expected_norm = [s.input_norm_log10, *(layer.backward_norm_log10 for layer in report.layers)]
        assert None not in expected_bound
        assert None not in expected_norm
        assert list(bound.get_ydata()) == expected_bound
        assert list(norm.get_ydata()) == expected_norm
        assert "log10" in ax.get_ylabel()
        assert s.verdict in ax.get_title()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / "report_plot.png"
        path.unlink(missing_ok=True)
        ax.figure.savefig(path)
        assert path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        plt.close(ax.figure)


async def test_plot_on_given_axes_and_nulls(report: AnalysisReport) -> None:
    """A null log10 (an exact zero) is drawn as a gap (NaN), on the Axes passed in."""
    layers = list(report.layers)
    layers[4] = layers[4].model_copy(update={"backward_norm_log10": None})
    holed = report.model_copy(update={"layers": layers})
    fig, given = plt.subplots()
    try:
        ax = holed.plot(ax=given)
        assert ax is given
        norm = [line for line in ax.get_lines() if np.size(line.get_xdata()) == DEPTH + 1][1]
        y = np.asarray(norm.get_ydata(), dtype=float)
        assert np.isnan(y[5])
        assert np.isnan(y).sum() == 1
    finally:
        plt.close(fig)


async def test_plot_title_keeps_the_first_sentence(report: AnalysisReport) -> None:
    """The title is the verdict and the advice's first sentence, whole: its numbers must not be cut at their
    decimal point ("reaches 10^-3.12 over 20 layers", not "reaches 10^-3")."""
    first = report.summary.advice.partition(". ")[0].rstrip(".")
    assert re.search(r"10\^-?\d+\.\d+ over 20 layers", first), first  # this report's advice has a decimal number
    ax = report.plot()
    try:
        assert ax.get_title() in {f"{report.summary.verdict}: {first}", f"{report.summary.verdict}: {first}."}
    finally:
        plt.close(ax.figure)
