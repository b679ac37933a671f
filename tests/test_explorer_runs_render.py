"""The explorer's run view in Debian's headless chromium against a real server: a run of five steps made through
the HTTP API, its heatmap's numbers equal to GET /v1/runs/{run}'s backward_norm_log10 exactly, its verdict strip
equal to the run's verdicts, and a click on a step drawing that step's report (the table's numbers are the stored
report's)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chromium import CHROMIUM, Chromium, requires_chromium

pytestmark = requires_chromium()

GAINS = (0.3, 0.6, 1.0, 1.5, 3.0)

READ_RUN = """(() => ({
  cells: [...document.querySelectorAll("#run-heatmap rect.heat-cell")].map((r) =>
    [Number(r.dataset.layer), Number(r.dataset.step), r.dataset.value]),
  verdicts: [...document.querySelectorAll("#run-verdicts li")].map((li) => [Number(li.dataset.step),
    li.dataset.verdict]),
  listed: [...document.querySelectorAll("#run-list li")].map((li) => li.dataset.run),
}))()"""

READ_TABLE = """[...document.querySelectorAll("#layers tbody tr")].map((row) =>
  Object.fromEntries([...row.querySelectorAll("[data-field]")].map((c) => [c.dataset.field, c.dataset.value])))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    assert CHROMIUM is not None
    with Chromium(CHROMIUM) as chromium:
        yield chromium


def _make_run(server_url: str, run: str) -> None:
    for step, gain in enumerate(GAINS):
        network = {"activation": "tanh", "init": {"widths": [8] * 13, "scheme": "orthogonal", "gain": gain}}
        body = {"network": network, "inputs": {"count": 4}, "run": run, "step": step * 10}
        answer = httpx.post(f"{server_url}/v1/analyses", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Jacspec-Run-Step"] == str(step * 10)


def test_the_run_view_shows_the_runs_numbers_and_a_clicked_step(
    browser: Chromium, server_url: str, tmp_path: Path
) -> None:
    run = f"explorer-{uuid.uuid4().hex[:8]}"
    _make_run(server_url, run)
    expected = httpx.get(f"{server_url}/v1/runs/{run}", timeout=30).json()
    assert len(expected["steps"]) == len(GAINS)

    browser.viewport(1280, 900)
    browser.events.clear()
    browser.navigate(f"{server_url}/?run={run}")
    browser.wait_for(f"document.documentElement.dataset.runView === '{run}'")
    page = browser.evaluate(READ_RUN)
    assert run in page["listed"]

    # The heatmap: one cell per layer and step, its data-value the API's number exactly (null where absent).
    cells = {(layer, step): value for layer, step, value in page["cells"]}
    assert len(cells) == len(page["cells"]) == len(expected["layers"]) * len(expected["steps"])
    for layer in expected["layers"]:
        for step, value in zip(expected["steps"], layer["metrics"]["backward_norm_log10"], strict=True):
            shown = cells[(layer["index"], step)]
            assert (None if shown == "null" else float(shown)) == value
    assert page["verdicts"] == [list(pair) for pair in zip(expected["steps"], expected["verdicts"], strict=True)]
    assert len(set(expected["verdicts"])) > 1  # the gains span vanishing to healthy or exploding

    # A click on the step 30 cell of layer 1 draws that step's report as the explorer draws any report.
    drawn = int(browser.evaluate("document.documentElement.dataset.analyses || '0'"))
    browser.evaluate(
        'document.querySelector(\'#run-heatmap rect[data-layer="1"][data-step="30"]\').dispatchEvent('
        "new MouseEvent('click', {bubbles: true}))"
    )
    browser.wait_for(f"document.documentElement.dataset.analyses === '{drawn + 1}'")
    assert browser.evaluate("document.documentElement.dataset.runStep") == "30"
    stored = httpx.get(f"{server_url}/v1/runs/{run}/steps/30", timeout=30).json()
    rows = browser.evaluate(READ_TABLE)
    assert len(rows) == len(stored["layers"])
    for row, layer in zip(rows, stored["layers"], strict=True):
        assert float(row["backward_norm_log10"]) == layer["backward_norm_log10"]
        assert float(row["weight_norm"]) == layer["weight_norm"]
    assert browser.evaluate("document.getElementById('verdict-value').textContent") == stored["summary"]["verdict"]

    screenshot = browser.screenshot(tmp_path / "explorer-run-view.png")
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    assert [url for url in browser.requested_urls() if not url.startswith(f"{server_url}/")] == []
    assert browser.exceptions() == []


def test_the_page_lists_the_runs_when_it_opens(browser: Chromium, server_url: str) -> None:
    run = f"listed-{uuid.uuid4().hex[:8]}"
    _make_run(server_url, run)
    browser.navigate(f"{server_url}/")
    browser.wait_for("document.documentElement.dataset.ready === 'true'")
    listed = browser.evaluate(READ_RUN)["listed"]
    assert run in listed
    names = [info["run"] for info in httpx.get(f"{server_url}/v1/runs?limit=100", timeout=30).json()["runs"]]
    assert listed == names  # the API's order: most recently updated first
    assert browser.exceptions() == []
