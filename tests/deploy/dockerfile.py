"""Just enough of Docker's reading of a Dockerfile and a .dockerignore for the tests to run the file's own commands.

Instructions (comments dropped, continuation lines joined), stages split at ``FROM``, ``ENV`` values expanded as
Docker expands them (a ``$NAME`` refers to the value before the instruction), exec-form commands, and the
build context after .dockerignore (a pattern matches a path or any of its parents; the last match decides).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper case: ``RUN``, ``COPY``, …"""
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every ``keyword`` instruction of the stage, in order."""
        return [i.arguments for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> str:
        [arguments] = self.all(keyword)
        return arguments

    def env(self, outside: dict[str, str]) -> dict[str, str]:
        """``outside`` (the base image's environment) with the stage's ``ENV`` settings, expanded as Docker does."""
        env = dict(outside)
        for arguments in self.all("ENV"):
            before = dict(env)
            for assignment in shlex.split(arguments):
                name, sep, value = assignment.partition("=")
                assert sep, f"ENV {arguments!r}: only the NAME=value form is read here"
                env[name] = expand(value, before)
        return env


def expand(value: str, env: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` replaced by their values in ``env`` (empty when unset)."""
    return VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        logical = pending + stripped
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages(text: str) -> list[Stage]:
    """The build stages, with ``FROM``'s base expanded from the global ``ARG`` defaults."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(expand(words[0], args), name))
        elif not found:
            assert instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
            name, _, default = instruction.arguments.partition("=")
            args[name] = default
        else:
            found[-1].instructions.append(instruction)
    return found


def exec_form(arguments: str) -> list[str]:
    """A ``CMD``'s JSON array."""
    command = json.loads(arguments)
    assert isinstance(command, list)
    assert all(isinstance(word, str) for word in command)
    return command


def healthcheck(arguments: str) -> tuple[dict[str, str], list[str]]:
    """A ``HEALTHCHECK``'s options and its exec-form command."""
    options, sep, command = arguments.partition("CMD ")
    assert sep, f"HEALTHCHECK {arguments!r} has no CMD"
    parsed = dict(option.removeprefix("--").split("=", 1) for option in options.split())
    return parsed, exec_form(command)


def copy(arguments: str) -> tuple[dict[str, str], list[str], str]:
    """A ``COPY``'s options (``--from``), its sources and its destination."""
    words = shlex.split(arguments)
    options = dict(w.removeprefix("--").split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return options, paths[:-1], paths[-1]


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """The .dockerignore patterns as (is an exception ``!``, regex of a path relative to the context)."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        regex = "".join(_glob_piece(piece) for piece in re.split(r"(\*\*/|\*\*|\*|\?)", pattern))
        patterns.append((negated, re.compile(regex)))
    return patterns


def _glob_piece(piece: str) -> str:
    return {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(piece, re.escape(piece))


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``relative`` (a path in the context, ``/``-separated) out of the build context."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not negated
    return result


def build_context(root: Path, destination: Path) -> list[str]:
    """Copy the files of ``root`` that .dockerignore lets into the context to ``destination``; their paths."""
    patterns = ignore_patterns((root / ".dockerignore").read_text())
    exceptions = [regex.pattern for negated, regex in patterns if negated]
    copied = []
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory).relative_to(root).as_posix()
        prefix = "" if here == "." else here + "/"
        # Do not descend where everything is ignored and no exception names anything below.
        subdirectories[:] = [
            d
            for d in subdirectories
            if not ignored(prefix + d, patterns) or any(e.startswith(re.escape(prefix + d + "/")) for e in exceptions)
        ]
        for name in files:
            relative = prefix + name
            if not ignored(relative, patterns):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / relative, destination / relative)
                copied.append(relative)
    return sorted(copied)


def run_copy(arguments: str, context: Path, workdir: Path) -> None:
    """``COPY src... dest`` from ``context`` into ``workdir`` (a directory source copies its contents)."""
    options, sources, destination = copy(arguments)
    assert not options, f"COPY {arguments!r}: only copies from the context are run here"
    target = workdir / destination
    for source in sources:
        path = context / source
        assert path.exists(), f"COPY {source}: not in the build context (see .dockerignore)"
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
        else:
            assert len(sources) == 1 or destination.endswith("/"), "several sources need a directory destination"
            dest = target / path.name if destination.endswith("/") else target
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
