"""/docs and /redoc render in a real browser with no network but the server's own loopback address.

Headless Chromium loads each page and runs its JavaScript; the rendered DOM must hold what only the scripts can
put there (Swagger UI's operation rows, ReDoc's operation headings), which come from /openapi.json.
"""

from __future__ import annotations

import subprocess
import tempfile

from tests.chromium import CHROMIUM, FLAGS, requires_chromium

pytestmark = requires_chromium()


def _rendered(url: str) -> str:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, *FLAGS, "--virtual-time-budget=10000", "--dump-dom", f"--user-data-dir={profile}", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    return result.stdout


def test_swagger_ui_renders_offline(server_url: str) -> None:
    dom = _rendered(f"{server_url}/docs")
    for path in ("/v1/analyses", "/v1/bounds", "/v1/activations", "/v1/init-schemes"):
        assert f'data-path="{path}"' in dom


def test_redoc_renders_offline(server_url: str) -> None:
    dom = _rendered(f"{server_url}/redoc")
    assert "Analyse a network" in dom
    assert "The product bound from factors" in dom
