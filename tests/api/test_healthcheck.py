"""``python -m api.healthcheck`` (the container's HEALTHCHECK): 0 when /healthz answers ok, 1 when nothing does."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from api.healthcheck import healthy, healthz_url, main
from tests.helpers import free_port


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000/healthz"),
        ("::", "http://[::1]:8000/healthz"),
        ("10.1.2.3", "http://10.1.2.3:8000/healthz"),
        ("127.0.0.1", "http://127.0.0.1:8000/healthz"),
    ],
)
def test_asks_where_the_server_listens(host: str, url: str) -> None:
    assert healthz_url(host, 8000) == url


def test_a_live_server_is_healthy(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert healthy(f"{server_url}/healthz")
    monkeypatch.setenv("JACSPEC_PORT", str(urlsplit(server_url).port))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy in the environment is not asked
    assert main() == 0


def test_nothing_listening_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_PORT", str(free_port()))
    assert main() == 1


def test_a_page_that_is_not_healthz_is_unhealthy(server_url: str) -> None:
    assert not healthy(f"{server_url}/readyz")  # 200, but its status is "ready", not "ok"
    assert not healthy(f"{server_url}/docs")  # 200, not JSON
