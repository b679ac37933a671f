"""Settings from the environment, and the README's table of them."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from api.settings import Settings


def test_queue_defaults() -> None:
    settings = Settings()
    assert settings.queue_timeout == 10.0
    assert settings.queue_size == 16


def test_queue_timeout_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_QUEUE_TIMEOUT", "0")
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_readme_documents_every_setting() -> None:
    """The README's Settings table has one row per field, named with the prefix, each with a default."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `JACSPEC_([A-Z_]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    assert {name.lower() for name, _ in rows} == set(Settings.model_fields)
    assert all(default.strip() for _, default in rows)
