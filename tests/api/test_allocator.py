"""glibc's malloc tuned by api.allocator: freed request memory is reused without page faults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")

FAULTS = """
import resource, sys
from api import allocator
tuned = allocator.tune() if sys.argv[1] == "tune" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    block = bytearray(40 * 2**20)  # zero-filled: every page of it touched
    del block
print(int(tuned), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(mode: str, **env: str) -> tuple[bool, int]:
    """(whether tune() set the thresholds, the minor page faults of ten 40 MiB buffers made and freed)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return bool(int(out[0])), int(out[1])


def test_tuned_malloc_reuses_freed_buffers_without_faults() -> None:
    """By default a 40 MiB buffer is beyond glibc's largest dynamic mmap threshold (32 MiB): each one is a fresh
    mapping, faulted in page by page (10240 faults of 4 KiB, or 20 of 2 MiB, each time); tuned, it comes from the
    heap, which reuses the first one's pages."""
    tuned, tuned_faults = _run("tune")
    _, default_faults = _run("default")
    assert tuned
    assert default_faults >= 10 * 20
    assert tuned_faults * 5 < default_faults


def test_the_environment_overrides_the_tuning() -> None:
    tuned, _ = _run("tune", MALLOC_TRIM_THRESHOLD_=str(2**20))
    assert not tuned
