"""The explorer at / in a real browser (Debian's headless chromium) against a real server, driven by the keyboard.

What the issue asks to see: the page loads, a tanh network with gain 0.5 and depth 30 is analysed, the plot is
drawn, the verdict reads vanishing, and every number in the table equals that of ``POST /v1/analyses`` for the same
body; the page works at a phone's width and shows the API's errors. A screenshot is saved under pytest's tmp dir.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chromium import CHROMIUM, Chromium, requires_chromium

pytestmark = requires_chromium()

TANH_30 = {
    "network": {
        "activation": "tanh",
        "init": {"widths": [32] * 31, "scheme": "orthogonal", "gain": 0.5, "seed": 0},
    },
    "inputs": {"count": 16, "seed": 0},
}
"""What a user builds by choosing tanh, orthogonal, gain 0.5, width 32 and depth 30 (probes and seed as they are)."""

READ_PAGE = """(() => {
  const text = (cell) => (cell.querySelector("sup") ?? cell).textContent;  // a power 10^x: its exponent
  const cells = (row) => Object.fromEntries(
    [...row.querySelectorAll("[data-field]")].map((c) => [c.dataset.field, [c.dataset.value, text(c)]]));
  const svg = document.querySelector("#plot svg");
  return {
    request: document.getElementById("request-json").textContent,
    verdict: document.getElementById("verdict-value").textContent,
    boundVerdict: document.getElementById("bound-verdict-value").textContent,
    advice: document.getElementById("advice").textContent,
    summary: cells(document.getElementById("summary")),
    rows: [...document.querySelectorAll("#layers tbody tr")].map(cells),
    caption: document.getElementById("layers-caption").textContent,
    svg: {
      role: svg.getAttribute("role"),
      label: [...svg.getAttribute("aria-labelledby").split(" ")].map((id) => document.getElementById(id).textContent),
      paths: Object.fromEntries([...svg.querySelectorAll("path")].map((p) => [p.getAttribute("class"),
        p.getAttribute("d")])),
      markers: Object.fromEntries(["bound", "norm"].map((name) =>
        [name, [...svg.querySelectorAll(`.series.${name} title`)].map((t) => t.textContent)])),
    },
  };
})()"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    assert CHROMIUM is not None
    with Chromium(CHROMIUM) as chromium:
        yield chromium


def _open(browser: Chromium, url: str) -> None:
    browser.events.clear()
    browser.navigate(url)
    browser.wait_for("document.documentElement.dataset.ready === 'true'")


def _wait_for_report(browser: Chromium, count: int) -> None:
    """Wait until the page has drawn its ``count``-th report; fail at once with the problem it shows instead."""
    browser.wait_for(
        f"document.documentElement.dataset.analyses === '{count}' || document.getElementById('problem').textContent"
    )
    assert browser.evaluate("document.getElementById('problem').textContent") == ""
    assert browser.evaluate("document.documentElement.dataset.analyses") == str(count)


def _number(text: str) -> float:
    """A number as the page prints it (with a real minus sign)."""
    return float(text.replace("\u2212", "-"))


def _assert_equal_cell(field: str, cell: list[str], expected: Any) -> None:
    """The cell's exact value (data-value) equals the API's; its text (a power's exponent) is it to 6 figures."""
    value, text = cell
    if field in {"shape", "flags"}:
        assert json.loads(value) == expected, field
    elif expected is None:
        assert (value, text) == ("null", "—"), field
    else:
        assert float(value) == expected, field
        assert _number(text) == float(f"{expected:.6g}"), (field, text, expected)


def _vertices(d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[\d.]+) (-?[\d.]+)", d)]


def _assert_plots(d: str, values: list[float]) -> None:
    """The path has one vertex per value, x evenly spaced by j and y an affine, decreasing function of log10."""
    points = _vertices(d)
    assert len(points) == len(values)
    (x0, y0), (xl, yl) = points[0], points[-1]
    assert xl > x0
    assert values[0] != values[-1]
    slope = (yl - y0) / (values[-1] - values[0])
    assert slope < 0  # up the screen is up the log scale
    for j, ((x, y), v) in enumerate(zip(points, values, strict=True)):
        assert x == pytest.approx(x0 + j * (xl - x0) / (len(values) - 1), abs=0.02)
        assert y == pytest.approx(y0 + slope * (v - values[0]), abs=0.02)


def _assert_served_alone(browser: Chromium, server_url: str) -> None:
    """No request left the server, no script failed and no content-security rule was broken."""
    urls = browser.requested_urls()
    assert urls
    assert [url for url in urls if not url.startswith(f"{server_url}/")] == []
    assert browser.exceptions() == []


def test_a_deep_tanh_network_analysed_with_the_keyboard_matches_the_api(
    browser: Chromium, server_url: str, tmp_path: Path
) -> None:
    browser.viewport(1280, 900)
    _open(browser, f"{server_url}/")
    assert browser.wait_for("document.getElementById('scheme').options.length") >= 8

    # Keyboard only: Tab to each control, choose by typing, replace the numbers, Enter submits.
    assert browser.tab_to("activation") <= 6
    focus = browser.evaluate("(s => [s.outlineStyle, s.outlineWidth])(getComputedStyle(document.activeElement))")
    assert focus[0] != "none"
    assert focus[1] != "0px"
    for element_id, keys, value in [
        ("activation", "tanh", "tanh"),
        ("scheme", "orth", "orthogonal"),
        ("gain", "0.5", "0.5"),
        ("width", "32", "32"),
        ("depth", "30", "30"),
    ]:
        if element_id != "activation":
            browser.press("Tab")
        assert browser.evaluate("document.activeElement.id") == element_id
        if element_id in {"gain", "width", "depth"}:
            browser.select_all()
        browser.type(keys)
        assert browser.evaluate("document.activeElement.value") == value
    browser.press("Enter")
    _wait_for_report(browser, 1)
    page = browser.evaluate(READ_PAGE)

    # The page POSTed the body a user would write, and shows it.
    analyses_url = f"{server_url}/v1/analyses"
    assert browser.posted(analyses_url) == [TANH_30]
    assert json.loads(page["request"]) == TANH_30
    report = httpx.post(analyses_url, json=TANH_30, timeout=60).json()

    summary = report["summary"]
    assert page["verdict"] == summary["verdict"] == "vanishing"
    assert page["boundVerdict"] == summary["bound_verdict"] == "vanishing"
    assert page["advice"] == summary["advice"]
    for field, cell in page["summary"].items():
        _assert_equal_cell(field, cell, summary[field])
    assert set(page["summary"]) == {
        "input_bound_log10",
        "input_norm_log10",
        "rate_log10",
        "observed_rate_log10",
        "suggested_gain",
        "bound_gain",
    }

    # The table: one row per layer, every printed number that of the API's report.
    assert len(page["rows"]) == len(report["layers"]) == 30
    assert "30 layers" in page["caption"]
    for row, layer in zip(page["rows"], report["layers"], strict=True):
        assert row.pop("index") == [str(layer["index"]), str(layer["index"])]
        assert len(row) == 10
        for field, cell in row.items():
            _assert_equal_cell(field, cell, layer[field])

    # The plot: both curves through every layer j = 0..30 at the reported log10 values.
    bound = [summary["input_bound_log10"], *(layer["backward_bound_log10"] for layer in report["layers"])]
    norm = [summary["input_norm_log10"], *(layer["backward_norm_log10"] for layer in report["layers"])]
    svg = page["svg"]
    assert svg["role"] == "img"
    assert "vanishing" in svg["label"][0]
    assert f"10^{bound[0]:.3g}" in svg["label"][1]
    _assert_plots(svg["paths"]["bound"], bound)
    _assert_plots(svg["paths"]["norm"], norm)
    assert len(svg["markers"]["bound"]) == len(svg["markers"]["norm"]) == 31
    assert svg["markers"]["bound"][0] == f"j = 0: bound 10^{bound[0]:.5f}".replace("-", "\u2212")

    screenshot = browser.screenshot(tmp_path / "explorer-tanh-gain0.5-depth30.png")
    print(f"screenshot: {screenshot}")
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    _assert_served_alone(browser, server_url)

    # The advice's gain, one key press away: the network it analyses is stable.
    browser.tab_to("use-suggested")
    browser.press("Enter")
    _wait_for_report(browser, 2)
    request = json.loads(browser.evaluate("document.getElementById('request-json').textContent"))
    assert request["network"]["init"]["gain"] == float(f"{summary['suggested_gain']:.6g}")
    assert browser.evaluate("document.getElementById('verdict-value').textContent") == "stable"


def test_the_page_fits_a_phone_and_shows_the_apis_errors(browser: Chromium, server_url: str, tmp_path: Path) -> None:
    browser.viewport(375, 740, mobile=True)
    try:
        # A shared link fills the form and analyses at once.
        _open(browser, f"{server_url}/?activation=relu&scheme=he_normal&gain=1&width=16&depth=12")
        _wait_for_report(browser, 1)
        form = browser.evaluate("['activation', 'scheme', 'depth'].map((id) => document.getElementById(id).value)")
        assert form == ["relu", "he_normal", "12"]
        assert len(browser.evaluate(READ_PAGE)["rows"]) == 12
        sizes = browser.evaluate(
            """(() => {
              const wrap = document.querySelector(".table-wrap");
              return {page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,
                      wrap: wrap.scrollWidth, wrapView: wrap.clientWidth,
                      plot: document.querySelector("#plot svg").getBoundingClientRect().right};
            })()"""
        )
        assert sizes["view"] == 375
        assert sizes["page"] <= sizes["view"], "the page scrolls sideways at a phone's width"
        assert sizes["plot"] <= sizes["view"]
        assert sizes["wrap"] > sizes["wrapView"], "the table should scroll inside its wrapper"
        print(f"screenshot: {browser.screenshot(tmp_path / 'explorer-phone.png')}")

        # An invalid gain: the API's problem+json, field by field, in the page's live region.
        browser.tab_to("gain")
        browser.select_all()
        browser.type("0")
        browser.press("Enter")
        browser.wait_for("document.getElementById('problem').textContent")
        body = json.loads(browser.evaluate("document.getElementById('request-json').textContent"))
        assert body["network"]["init"]["gain"] == 0
        answer = httpx.post(f"{server_url}/v1/analyses", json=body, timeout=60)
        assert answer.status_code == 422
        problem = answer.json()
        shown = browser.evaluate(
            """(() => {
              const box = document.getElementById("problem");
              return {live: box.getAttribute("aria-live"), text: box.textContent,
                      pointers: [...box.querySelectorAll(".pointer")].map((p) => p.textContent),
                      details: [...box.querySelectorAll(".error-detail")].map((p) => p.textContent),
                      invalid: document.getElementById("gain").getAttribute("aria-invalid"),
                      results: document.getElementById("results").hidden};
            })()"""
        )
        assert shown["live"] == "assertive"
        assert "HTTP 422" in shown["text"]
        assert problem["detail"] in shown["text"]
        assert shown["pointers"] == [e["pointer"] for e in problem["errors"]] == ["/network/init/gain"]
        assert shown["details"] == [f": {e['detail']}" for e in problem["errors"]]
        assert shown["invalid"] == "true"
        assert shown["results"] is True  # no stale numbers beside an error

        # Fixed and sent again: the error goes, the result comes back.
        browser.select_all()
        browser.type("1")
        browser.press("Enter")
        _wait_for_report(browser, 2)
        assert browser.evaluate("document.getElementById('problem').textContent") == ""
        assert browser.evaluate("document.getElementById('gain').getAttribute('aria-invalid')") is None
        assert browser.evaluate("document.documentElement.scrollWidth") <= 375
        _assert_served_alone(browser, server_url)
    finally:
        browser.call("Emulation.clearDeviceMetricsOverride")
