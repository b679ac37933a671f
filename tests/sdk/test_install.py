"""The SDK installs on its own: ``pip install ./sdk`` into a fresh virtual environment brings the client, its
models and the ``jacspec`` command, and none of the server's dependencies.

SLOW: creates a venv and runs pip (from the configured indexes and wheel caches, as a user would), about
10-60 s; the pip step may take up to 300 s on a cold cache. It is not skipped: the separation of the SDK from
the server is the point of the distribution.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ["fastapi", "numpy", "scipy", "starlette", "uvicorn"]
PIP_TIMEOUT_S = 300

PROBE = textwrap.dedent(
    f"""
    import importlib.util, json, sys
    import jacspec
    import jacspec.models
    from jacspec import AnalysisReport, AsyncClient, Client, Network, Tensor
    print(json.dumps({{
        "file": jacspec.__file__,
        "version": jacspec.__version__,
        "find_spec": {{name: importlib.util.find_spec(name) is not None for name in {SERVER_ONLY!r}}},
        "loaded": sorted(name for name in sys.modules if name.split(".")[0] in {SERVER_ONLY!r}),
        "prefix": sys.prefix,
    }}))
    """
)


def _env() -> dict[str, str]:
    """The caller's environment (pip's index and cache settings), without anything that would leak this
    checkout or the project's .venv into the new interpreter."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH"):
        env.pop(name, None)
    env["PIP_NO_INPUT"] = "1"
    return env


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if sys.platform == "win32" else "bin") / name


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pip install <copy of sdk/>`` done.

    The copy (without build/ and *.egg-info) keeps pip's in-tree build from writing into sdk/, which others
    may be editing; it installs the same files.
    """
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "sdk"
    shutil.copytree(ROOT / "sdk", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, env=_env(), timeout=120)
    pip = subprocess.run(
        [str(_bin(env_dir, "python")), "-m", "pip", "install", "--quiet", str(source)],
        env=_env(),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
    )
    assert pip.returncode == 0, f"pip install sdk/ failed:\n{pip.stdout[-3000:]}\n{pip.stderr[-3000:]}"
    return env_dir


def test_imports_without_server_dependencies(venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(_bin(venv, "python")), "-c", PROBE],
        env=_env(),
        cwd=tmp_path,  # not the checkout: `import jacspec` must find the installed copy
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert Path(probe["file"]).resolve().is_relative_to(venv.resolve()), probe["file"]
    assert Path(probe["prefix"]).resolve() == venv.resolve()
    from jacspec import __version__

    assert probe["version"] == __version__
    assert probe["find_spec"] == dict.fromkeys(SERVER_ONLY, False)
    assert probe["loaded"] == []


def test_import_loads_no_optional_dependency() -> None:
    """``import jacspec`` (the clients, the models, the CLI) in this environment, with whichever extras it has,
    imports none of them: torch, numpy, pandas, matplotlib and safetensors wait for the function that uses them."""
    optional = ["matplotlib", "numpy", "pandas", "safetensors", "torch"]
    probe = (
        "import json, sys; import jacspec, jacspec.models, jacspec._cli; from jacspec import *; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({optional!r}))))"
    )
    env = {**_env(), "PYTHONPATH": str(ROOT / "sdk" / "src")}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_console_script(venv: Path, tmp_path: Path) -> None:
    script = _bin(venv, "jacspec")
    assert script.is_file()
    assert os.access(script, os.X_OK)
    result = subprocess.run(
        [str(script), "--help"], env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "usage: jacspec" in result.stdout
    assert "analyze" in result.stdout
    sub = subprocess.run(
        [str(script), "analyze", "--help"], env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert sub.returncode == 0, sub.stderr
    assert "--init" in sub.stdout
    assert "--json" in sub.stdout
    assert "  output_activation  " in sub.stdout
