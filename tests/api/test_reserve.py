"""Bodies read into a buffer reserved at their declared length: the same bytes, and memory taken only as written."""

from __future__ import annotations

import resource
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save as save_numpy

from api import body, reserve
from api.problems import ProblemError

pytestmark = pytest.mark.anyio


def _resident() -> int:
    """This process's resident memory in bytes (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_a_reserved_buffer_takes_memory_only_where_written() -> None:
    """A client may declare 512 MiB and send 4: the reservation must not commit the rest."""
    before = _resident()
    buffer = reserve.reserved(512 * 2**20)
    assert buffer is not None
    assert len(buffer) == 512 * 2**20
    buffer[:4] = b"abcd"
    assert _resident() - before < 64 * 2**20
    del buffer[4:]
    assert buffer == b"abcd"


async def _chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


@pytest.mark.parametrize(
    ("declared", "pieces"),
    [(10, [b"0123", b"456789"]), (10, [b"0123"]), (3 * 2**20, [b"x" * 2**20] * 3), (0, [])],
    ids=["exact", "shorter", "three MiB", "empty"],
)
async def test_filling_gives_the_chunks_bytes(declared: int, pieces: list[bytes]) -> None:
    buffer = reserve.reserved(declared)
    assert buffer is not None
    assert await body._fill(buffer, _chunks(*pieces)) == b"".join(pieces)


async def test_more_than_declared_is_a_400() -> None:
    buffer = reserve.reserved(4)
    assert buffer is not None
    with pytest.raises(ProblemError) as caught:
        await body._fill(buffer, _chunks(b"012", b"34"))
    assert caught.value.problem.status == 400
    assert "longer than its Content-Length" in (caught.value.problem.detail or "")


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("road", ["reserved", "grown"])
async def test_both_roads_read_an_upload_alike(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, road: str
) -> None:
    """Reserved at its Content-Length (every body, here) or grown chunk by chunk: the same analysis."""
    monkeypatch.setattr(body, "RESERVE_ABOVE", 0 if road == "reserved" else 2**40)
    weights = {"0.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 10}
    request = httpx.Request("POST", "http://unused/", files={"weights": ("w", save_numpy(weights))})
    data, headers = request.read(), {"content-type": request.headers["content-type"]}
    headers["content-length"] = str(len(data))
    in_chunks = await client.post("/v1/analyses", content=_pieces(data, 5), headers=headers)
    whole = await client.post("/v1/analyses", content=data, headers=headers)
    assert in_chunks.status_code == whole.status_code == 200, in_chunks.text
    assert in_chunks.json()["layers"] == whole.json()["layers"]
