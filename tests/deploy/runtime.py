"""The server's runtime dependencies, found in this (the test) environment and offered to another one by links.

``runtime_view`` links every distribution that the server and the SDK need at run time (their
``project.dependencies``, followed through the installed metadata, extras and markers included), and the build
requirements of both, into one directory. A virtual environment given that directory (by a ``.pth`` file) sees
those distributions, already installed, and nothing else of this environment: not torch, not the test tools. A
dependency the code imports without declaring it is therefore missing there, as it would be in the image.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCAL = {"jacspec", "jacspec-server"}
"""Installed from the checkout by the command under test, so never taken from this environment."""


def declared(projects: list[Path]) -> list[str]:
    """The runtime and build requirements of the ``pyproject.toml`` files, less the local distributions."""
    requirements = []
    for path in projects:
        project = tomllib.loads(path.read_text())
        requirements += project["project"].get("dependencies", []) + project["build-system"]["requires"]
    return [r for r in requirements if canonicalize_name(Requirement(r).name) not in LOCAL]


def closure(requirements: list[str]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions that ``requirements`` need, recursively, by canonical name."""
    found: dict[str, importlib.metadata.Distribution] = {}
    seen: set[tuple[str, str]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = sorted(requirement.extras) or [""]
        if all((name, extra) in seen for extra in extras):
            continue
        seen.update((name, extra) for extra in extras)
        distribution = found.setdefault(name, importlib.metadata.distribution(name))
        assert requirement.specifier.contains(distribution.version, prereleases=True), (requirement, distribution)
        for text in distribution.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(sub)
    return found


def runtime_view(projects: list[Path], view: Path) -> list[str]:
    """Link the top-level files and directories of every needed distribution into ``view``; their names."""
    view.mkdir(parents=True, exist_ok=True)
    for distribution in closure(declared(projects)).values():
        base = Path(str(distribution.locate_file("")))
        tops = {PurePosixPath(str(file)).parts[0] for file in distribution.files or []}
        for top in sorted(tops - {"..", "__pycache__"}):
            link = view / top
            if (base / top).exists() and not link.exists():
                link.symlink_to(base / top)
    return sorted(path.name for path in view.iterdir())
