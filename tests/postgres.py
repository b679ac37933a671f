"""A real PostgreSQL server for the tests (Debian's ``postgresql`` package, or binaries on PATH), and the
``database_url`` fixture that runs a test on SQLite and on PostgreSQL.

``postgres_server`` (one per session) runs ``initdb`` into a fresh directory and ``postgres -D dir -k dir -p
<free port>`` on 127.0.0.1 with trust authentication, as the current user; as root (CI) it runs both as the
unprivileged ``postgres`` user (or ``nobody``) through ``runuser``, since PostgreSQL refuses to run as root. Each
test gets a database of its own (``CREATE DATABASE``). Where no PostgreSQL is installed the PostgreSQL cases are
skipped, except in CI, which must have installed it (see .ci/run).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.helpers import STOP_TIMEOUT_S, free_port, stop

START_TIMEOUT_S = 60.0
UNPRIVILEGED = ("postgres", "nobody")
"""Who runs PostgreSQL when the tests run as root, the first that exists."""


def binary(name: str) -> str | None:
    """``name`` on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (the newest version)."""
    found = shutil.which(name)
    if found is not None:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    return versions[-1] if versions else None


INITDB, POSTGRES = binary("initdb"), binary("postgres")
INSTALLED = INITDB is not None and POSTGRES is not None


def _user() -> str | None:
    """The unprivileged user to run PostgreSQL as, when this process is root; None otherwise (run as oneself)."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    pytest.fail("running as root, and no unprivileged user to run PostgreSQL as (postgres or nobody)")


@dataclass
class Postgres:
    """A running PostgreSQL server: its port, superuser, data directory (which also holds its socket) and process."""

    port: int
    user: str
    directory: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server (psycopg 3)."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; its name."""
        name = f"t_{uuid.uuid4().hex}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return name

    def errors(self) -> str:
        return (self.directory / "postgres.log").read_text(errors="replace")[-3000:]


def _as(user: str | None, command: list[str]) -> list[str]:
    return command if user is None else ["runuser", "-u", user, "--", *command]


def start_postgres() -> Postgres:
    """initdb into a fresh directory, then postgres on a free loopback port; returns once it accepts connections."""
    assert INITDB is not None
    assert POSTGRES is not None
    user = _user()
    directory = Path(tempfile.mkdtemp(prefix="jacspec-postgres-"))
    data = directory / "data"
    if user is not None:
        record = pwd.getpwnam(user)
        os.chown(directory, record.pw_uid, record.pw_gid)
    superuser = user or pwd.getpwuid(os.geteuid()).pw_name
    log = directory / "postgres.log"
    initdb = [INITDB, "-D", str(data), "-U", superuser, "--auth=trust", "--no-sync", "-E", "UTF8"]
    subprocess.run(_as(user, initdb), check=True, capture_output=True, cwd=directory)
    port = free_port()
    serve = [POSTGRES, "-D", str(data), "-k", str(directory), "-p", str(port), "-c", "listen_addresses=127.0.0.1"]
    serve += ["-c", "fsync=off", "-c", "max_connections=200"]
    with log.open("wb") as out:
        process = subprocess.Popen(_as(user, serve), stdout=out, stderr=subprocess.STDOUT, cwd=directory)
    server = Postgres(port, superuser, directory, process)
    _wait_ready(server)
    return server


def _wait_ready(server: Postgres) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, dbname="postgres"):
                return
        except psycopg.OperationalError:
            if server.process.poll() is not None or time.monotonic() > deadline:
                stop(server.process)
                pytest.fail(f"PostgreSQL did not start:\n{server.errors()}")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL server for the session (skipped where none is installed, except in CI)."""
    if not INSTALLED:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's postgresql (see .ci/run)", pytrace=False)
        pytest.skip("PostgreSQL is not installed (CI installs Debian's postgresql)")
    server = start_postgres()
    try:
        yield server
    finally:
        stop(server.process, timeout=STOP_TIMEOUT_S)
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty database: a SQLite file in the test's directory, or a new database on the
    session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jacspec.sqlite3'}"
    server: Postgres = request.getfixturevalue("postgres_server")
    return server.url(server.create_database())
