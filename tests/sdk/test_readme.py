"""Every Python block of sdk/README.md runs, as written, against a live server."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[2] / "sdk" / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(block: str, server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_BASE_URL", server_url)
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})
