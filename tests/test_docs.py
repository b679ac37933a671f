"""Every example in the README and docs/ runs, or is checked, as written (the SDK's pages, sdk/README.md and
docs/sdk.md, by tests/sdk/test_readme.py).

- A ``python`` block runs against a live server (``$JACSPEC_BASE_URL``).
- A ``sh`` block's commands run against the same server in a temporary directory holding docs/examples:
  ``curl`` (its answer must be JSON and not a problem), ``python -c``, and ``.venv/bin/jacspec``, whose output
  must equal the ``text`` block that follows it, if any. ``make`` targets are dry-run (``make -n``),
  ``docker`` commands checked against the Dockerfile and compose file (which tests/deploy test), ``pip install``
  against the extras the SDK declares.
- The generated pages (``make docs``) equal what ``api.reference`` writes now.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from api import reference

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted(set((ROOT / "docs").glob("*.md")) - {ROOT / "docs" / "sdk.md"})]
DEFAULT_URL = "http://127.0.0.1:8000"
FENCE = re.compile(r"```(\w+)\n(.*?)```", flags=re.DOTALL)


def _blocks(kind: str) -> list[tuple[str, str, str | None]]:
    """(page, block, the text block right after it or None) for every ``kind`` block of every page."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        fences = list(FENCE.finditer(text))
        for i, fence in enumerate(fences):
            if fence.group(1) != kind:
                continue
            output = None
            if i + 1 < len(fences):
                after = fences[i + 1]
                if after.group(1) == "text" and not text[fence.end() : after.start()].strip():
                    output = after.group(2)
            found.append((page.relative_to(ROOT).as_posix(), fence.group(2), output))
    return found


PYTHON = _blocks("python")
SHELL = _blocks("sh")


def _commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        command = line.split("  #")[0].strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def test_the_pages_have_examples() -> None:
    assert len(PYTHON) >= 1
    assert len(SHELL) >= 4


@pytest.mark.parametrize(("page", "block", "output"), PYTHON, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(PYTHON)])
def test_python_block_runs(
    page: str, block: str, output: str | None, server_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if "torch" in block:
        pytest.importorskip("torch")
    monkeypatch.setenv("JACSPEC_BASE_URL", server_url)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, page, "exec"), {"__name__": "docs"})


@pytest.mark.parametrize(("page", "block", "output"), SHELL, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(SHELL)])
def test_shell_block_runs_or_is_checked(
    page: str, block: str, output: str | None, server_url: str, tmp_path: Path
) -> None:
    for example in (ROOT / "docs" / "examples").glob("*"):
        shutil.copy(example, tmp_path / example.name)
    printed = [_run(command, server_url, tmp_path) for command in _commands(block)]
    if output is not None:
        assert printed[-1] is not None, f"{page}: the block before a text block must print it"
        assert printed[-1].rstrip("\n") == output.rstrip("\n")


def _run(command: str, server_url: str, cwd: Path) -> str | None:
    """Run or check one command; what it printed where it was run."""
    words = shlex.split(command)
    program = words[0]
    if program == "make":
        subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, check=True, capture_output=True)
        return None
    if program == ".":
        assert words[1:] == [".venv/bin/activate"]
        return None
    if program in {"docker", "pip"}:
        _check_setup(words)
        return None
    if program == "curl":
        answer = _shell(command.replace(DEFAULT_URL, server_url), cwd)
        document = json.loads(answer)
        assert not (isinstance(document, dict) and "status" in document and "type" in document), document
        return answer
    if program == "python":
        return _shell(f"{shlex.quote(sys.executable)}{command[len('python') :]}", cwd)
    if program in {".venv/bin/python", ".venv/bin/jacspec", "jacspec"}:
        rest = command[len(program) :]
        base = f"{shlex.quote(sys.executable)}" + ("" if program.endswith("python") else " -m jacspec._cli")
        return _shell(f"{base}{rest}", cwd, server_url)
    pytest.fail(f"no check for {command!r}: run it or check it here")


def _shell(command: str, cwd: Path, server_url: str | None = None) -> str:
    env = None if server_url is None else {**os.environ, "JACSPEC_BASE_URL": server_url}
    done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
    return done.stdout


def _check_setup(words: list[str]) -> None:
    """``docker build -t NAME .``, ``docker run … -p P:P NAME``, ``docker compose …``, ``pip install …``: the files
    they need exist, the port is the one the image exposes, and every ``jacspec[extra]`` is declared."""
    if words[0] == "docker":
        assert (ROOT / "Dockerfile").is_file()
        assert (ROOT / "docker-compose.yml").is_file()
        exposed = re.findall(r"^EXPOSE (\d+)", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
        for option, value in itertools.pairwise(words):
            if option == "-p":
                assert value.split(":")[-1] in exposed
        return
    extras = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for word in words[2:]:
        match = re.fullmatch(r"['\"]?jacspec\[([\w,]+)\]['\"]?", word)
        if match:
            assert set(match.group(1).split(",")) <= set(extras), word


def test_report_page_is_written_from_the_models() -> None:
    assert reference.REPORT.read_text(encoding="utf-8") == reference.report_page(), "run `make docs`"


def test_settings_table_is_written_from_the_settings() -> None:
    text = reference.OPERATIONS.read_text(encoding="utf-8")
    assert text == reference.operations_page(text), "run `make docs`"


def test_every_setting_and_report_field_is_described() -> None:
    assert "|  |" not in reference.report_page()
    assert "|  |" not in reference.settings_table()
