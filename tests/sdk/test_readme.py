"""The examples of the SDK's pages, sdk/README.md and docs/sdk.md, against a live server (tests/test_docs.py checks
the README's and the other pages').

Every ``python`` block runs as written. In sdk/README.md and docs/sdk.md every ``sh`` line is run (``jacspec ...``,
through the CLI's ``main``) or checked (``pip install ...``: the path and extras exist, or it is PyTorch's CPU
wheel instruction), and every ``console`` block is the real output of the command on its first line.
"""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from jacspec._cli import main

ROOT = Path(__file__).resolve().parents[2]
SDK_DOCS = [ROOT / "sdk" / "README.md", ROOT / "docs" / "sdk.md"]
EXTRAS = set(tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]["optional-dependencies"])
OPTIONAL_MODULES = {"numpy", "torch", "safetensors", "pandas", "matplotlib"}
"""What the SDK's extras install: a block importing one is skipped where it is not installed."""
TORCH_CPU = ["torch", "--index-url", "https://download.pytorch.org/whl/cpu"]
"""PyTorch's instruction for its CPU wheel (pytorch.org, "Start locally": pip, CPU)."""


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.DOTALL)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


PYTHON = [(doc, block) for doc in SDK_DOCS for block in _blocks(doc, "python")]
SHELL = [
    (doc, line)
    for doc in SDK_DOCS
    for block in _blocks(doc, "sh")
    for line in block.splitlines()
    if shlex.split(line, comments=True)
]
CONSOLE = [(doc, block) for doc in SDK_DOCS for block in _blocks(doc, "console")]


def test_the_docs_have_examples() -> None:
    for doc in SDK_DOCS:
        assert sum(d == doc for d, _ in PYTHON) >= 3, doc
        assert any(d == doc for d, _ in SHELL), doc
    assert len(CONSOLE) >= 1


def test_the_extras_table_lists_every_extra() -> None:
    table = re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "sdk.md").read_text(), flags=re.MULTILINE)
    assert set(table) == EXTRAS
    assert "safetensors" in EXTRAS


def _imported(block: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(block)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize(("doc", "block"), PYTHON, ids=[f"{_name(d)}-{i}" for i, (d, _) in enumerate(PYTHON)])
def test_python_block_runs(doc: Path, block: str, server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in sorted(_imported(block) & OPTIONAL_MODULES):
        pytest.importorskip(module, reason=f"{module} is an optional extra and is not installed")
    if "matplotlib" in _imported(block) or ".plot(" in block:
        matplotlib = pytest.importorskip("matplotlib")
        matplotlib.use("Agg")
    monkeypatch.setenv("JACSPEC_BASE_URL", server_url)
    monkeypatch.delenv("JACSPEC_API_KEY", raising=False)
    exec(compile(block, str(doc), "exec"), {"__name__": "readme"})


def _jacspec(args: list[str], server_url: str, monkeypatch: pytest.MonkeyPatch) -> int | str | None:
    """``jacspec ARGS`` from the repository root against the live server: its exit status."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("JACSPEC_BASE_URL", server_url)
    monkeypatch.delenv("JACSPEC_API_KEY", raising=False)
    try:
        return main(args)
    except SystemExit as exit_:  # --help
        return exit_.code


def _check_pip_install(args: list[str]) -> None:
    if args == TORCH_CPU:
        return
    assert len(args) == 1, args
    match = re.fullmatch(r"\./sdk(?:\[([a-z,]+)\])?", args[0])
    assert match, f"pip installs the SDK from ./sdk: {args[0]!r}"
    assert (ROOT / "sdk" / "pyproject.toml").is_file()
    named = set(match[1].split(",")) if match[1] else set()
    assert named <= EXTRAS, f"no such extra: {sorted(named - EXTRAS)}"


@pytest.mark.parametrize(("doc", "line"), SHELL, ids=[f"{_name(d)}-{i}" for i, (d, _) in enumerate(SHELL)])
def test_shell_line(
    doc: Path, line: str, server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    words = shlex.split(line, comments=True)
    if words[0] == "jacspec":
        status = _jacspec(words[1:], server_url, monkeypatch)
        captured = capsys.readouterr()
        assert status == 0, captured.err
        assert captured.out
    elif words[:2] == ["pip", "install"]:
        _check_pip_install(words[2:])
    else:
        pytest.fail(f"{_name(doc)}: nothing checks the shell line {line!r}")


@pytest.mark.parametrize(("doc", "block"), CONSOLE, ids=[f"{_name(d)}-{i}" for i, (d, _) in enumerate(CONSOLE)])
def test_console_block_is_the_real_output(
    doc: Path, block: str, server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    command, *shown = block.splitlines()
    words = shlex.split(command)
    assert words[:2] == ["$", "jacspec"], command
    assert _jacspec(words[2:], server_url, monkeypatch) == 0
    assert capsys.readouterr().out.splitlines() == shown
