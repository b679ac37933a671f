"""Settings from the environment: list settings as JSON or comma-separated, API keys never printable."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from api.settings import Settings

KEY = "k-very-secret-1"


def test_defaults_leave_auth_and_cors_off() -> None:
    settings = Settings()
    assert settings.api_keys == []
    assert settings.cors_origins == []
    assert settings.queue_timeout == 10.0
    assert settings.queue_size == 16


def test_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_API_KEYS", f"{KEY}, k2,")
    monkeypatch.setenv("JACSPEC_CORS_ORIGINS", "http://a.test,https://b.test")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == [KEY, "k2"]
    assert settings.cors_origins == ["http://a.test", "https://b.test"]


def test_json_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_API_KEYS", '["a,b", "c"]')
    monkeypatch.setenv("JACSPEC_CORS_ORIGINS", '["*"]')
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == ["a,b", "c"]
    assert settings.cors_origins == ["*"]


def test_empty_env_is_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_API_KEYS", "")
    assert Settings().api_keys == []


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_cluster_is_none(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("JACSPEC_CLUSTER", value)
    assert Settings().cluster is None


def test_keys_are_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_API_KEYS", KEY)
    settings = Settings()
    assert settings.api_keys[0].get_secret_value() == KEY
    for text in (str(settings), repr(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert KEY not in text


@pytest.mark.parametrize("value", [f"[{KEY}", f'["{KEY}", " "]'])
def test_a_bad_key_list_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("JACSPEC_API_KEYS", value)
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings()
    assert "api_keys" in str(caught.value)
    assert KEY not in str(caught.value)


def test_queue_timeout_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_QUEUE_TIMEOUT", "0")
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_the_operations_page_documents_every_setting() -> None:
    """docs/operations.md's Settings table has one row per field, named with the prefix, each with a default."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = page.split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `JACSPEC_([A-Z_]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    assert {name.lower() for name, _ in rows} == set(Settings.model_fields)
    assert all(default.strip() for _, default in rows)
