"""Every Python block of README.md and sdk/README.md runs, as written, against a live server."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", ROOT / "sdk" / "README.md"]
BLOCKS = [
    (readme, block)
    for readme in READMES
    for block in re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
]


def test_the_readmes_have_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize(("readme", "block"), BLOCKS, ids=[f"{r.parent.name}-{i}" for i, (r, _) in enumerate(BLOCKS)])
def test_readme_block_runs(readme: Path, block: str, server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACSPEC_BASE_URL", server_url)
    exec(compile(block, str(readme), "exec"), {"__name__": "readme"})
