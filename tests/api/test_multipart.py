"""Splitting a whole multipart body held in the bytearray that ``api.ingest.body.read_body`` fills.

python-multipart is annotated to take ``bytes``; the server hands it a bytearray (the body grown in place). Every
body, well-formed or not, must split into the same parts, or be refused with the same 400, either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as save_numpy

from api.ingest.multipart import Part, split
from api.problems import ProblemError

BOUNDARY = b"jacspecBOUNDARY"


def _body(*parts: tuple[bytes, bytes], boundary: bytes = BOUNDARY) -> bytes:
    """A multipart body of (header lines, data) parts, closed by the final boundary."""
    body = b"".join(b"--%s\r\n%s\r\n\r\n%s\r\n" % (boundary, head, data) for head, data in parts)
    return body + b"--%s--\r\n" % boundary


FILE = b'Content-Disposition: form-data; name="weights"; filename="w.safetensors"\r\nContent-Type: x/y'
REQUEST = b'Content-Disposition: form-data; name="request"\r\nContent-Type: application/json'
LOOKALIKE = b"\r\n--jacspecBOUN\r\n-\x00\r\n--jacspecBOUNDARY-\r\r\n\n--\r\n"

BODIES = {
    "two parts": _body((FILE, b"\x00\x01\x02" * 100), (REQUEST, b'{"inputs": {"count": 2}}')),
    "data that looks like the boundary": _body((FILE, LOOKALIKE * 7), (REQUEST, b"{}")),
    "an empty part": _body((FILE, b""), (REQUEST, b"")),
    "a preamble and an epilogue": b"\r\n\r\n" + _body((FILE, b"abc")) + b"epilogue",
    "httpx's encoding": httpx.Request(
        "POST", "http://unused/", files={"weights": ("w", b"\r\n--x" * 50), "request": (None, b"{}")}
    ).read(),
    "truncated": _body((FILE, b"abc" * 10))[:-9],
    "truncated in a header": _body((FILE, b"abc"))[:40],
    "no closing boundary": _body((FILE, b"abc"))[: -len(b"--%s--\r\n" % BOUNDARY)],
    "three parts": _body(*[(b'Content-Disposition: form-data; name="p%d"' % i, b"x") for i in range(3)]),
    "a part without a name": _body((b"Content-Disposition: form-data", b"x")),
    "two parts of one name": _body((FILE, b"a"), (FILE, b"b")),
    "a bad character in a header name": _body((b"Content Disposition: form-data", b"x")),
    "a header without its LF": _body((FILE, b"x")).replace(b"x/y\r\n", b"x/y\r", 1),
    "the wrong boundary": _body((FILE, b"x"), boundary=b"other"),
    "not multipart at all": b'{"network": {}}',
    "empty": b"",
}


def _outcome(body: bytes | bytearray, boundary: bytes = BOUNDARY) -> object:
    """The parts as plain values, or the 400's detail."""
    try:
        parts = split(body, boundary)
    except ProblemError as exc:
        return ("refused", exc.problem.status, exc.problem.detail)
    return {name: _plain(part) for name, part in parts.items()}


def _plain(part: Part) -> tuple[str, str | None, str | None, bytes]:
    return part.name, part.filename, part.content_type, bytes(part.data)


@pytest.mark.parametrize("case", BODIES)
def test_a_bytearray_splits_as_bytes_do(case: str) -> None:
    body = BODIES[case]
    boundary = body.split(b"\r\n", 1)[0].removeprefix(b"--") if case == "httpx's encoding" else BOUNDARY
    assert _outcome(bytearray(body), boundary) == _outcome(body, boundary)


def test_the_parts_are_views_of_the_body_not_copies() -> None:
    body = bytearray(BODIES["two parts"])
    weights = split(body, BOUNDARY)["weights"].data
    assert weights.obj is body
    assert bytes(weights) == b"\x00\x01\x02" * 100


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300).map(lambda b: b + LOOKALIKE[: len(b) % len(LOOKALIKE)]),
    cut=st.integers(0, 400),
    flip=st.integers(0, 400),
)
def test_any_body_cut_or_flipped_splits_alike(data: bytes, cut: int, flip: int) -> None:
    """A valid body, and the same cut short or with one byte changed: the same outcome from both buffer types."""
    body = _body((FILE, data), (REQUEST, b"{}"))
    flipped = body[:flip] + bytes([body[flip] ^ 0x0D]) + body[flip + 1 :] if flip < len(body) else body
    for variant in (body, body[:cut], flipped):
        assert _outcome(bytearray(variant)) == _outcome(variant)


async def _pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [1, 7, 4096])
async def test_a_body_in_chunks_reads_as_the_body_whole(client: httpx.AsyncClient, size: int) -> None:
    """``read_body`` grows one buffer chunk by chunk, with or without a Content-Length: the same answer."""
    weights = {"0.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 10}
    request = httpx.Request("POST", "http://unused/", files={"weights": ("w", save_numpy(weights))})
    body, headers = request.read(), {"content-type": request.headers["content-type"]}
    whole = await client.post("/v1/analyses", content=body, headers=headers)
    chunked = await client.post("/v1/analyses", content=_pieces(body, size), headers=headers)
    assert "content-length" not in chunked.request.headers
    assert whole.status_code == chunked.status_code == 200, chunked.text
    assert whole.json()["layers"] == chunked.json()["layers"]


def _safetensors(*shapes: tuple[int, ...], seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return save_numpy({f"{i}.weight": rng.standard_normal(shape).astype(np.float32) for i, shape in enumerate(shapes)})


UPLOAD = _safetensors((3, 4), (5, 3))
SAFETENSORS_BODIES = {
    **BODIES,
    "the file first": _body((FILE, UPLOAD), (REQUEST, b"{}")),
    "the request first": _body((REQUEST, b'{"inputs": {"count": 2}}'), (FILE, UPLOAD)),
    "the file alone": _body((FILE, UPLOAD)),
    "two files": _body((FILE, UPLOAD), (FILE.replace(b'"weights"', b'"other"'), UPLOAD)),
    "a file with bytes after its last tensor": _body((FILE, UPLOAD + b"\0" * 8), (REQUEST, b"{}")),
    "a file cut short": _body((FILE, UPLOAD[:-4]), (REQUEST, b"{}")),
    "a header claiming more than the body": _body((FILE, UPLOAD[:8] + b" " + UPLOAD[9:])),
    "a body cut in the file": _body((FILE, UPLOAD))[:100],
    "a body cut after the file": _body((FILE, UPLOAD))[:-5],
    "three parts after a file": _body((FILE, UPLOAD), (REQUEST, b"{}"), (REQUEST.replace(b"request", b"x"), b"")),
    "no headers": b"--%s\r\n\r\n%s\r\n--%s--\r\n" % (BOUNDARY, UPLOAD, BOUNDARY),
    "httpx's encoding of a file": httpx.Request(
        "POST", "http://unused/", files={"request": (None, b"{}"), "weights": ("w", UPLOAD)}
    ).read(),
}


@pytest.mark.parametrize("case", SAFETENSORS_BODIES)
def test_a_body_with_a_safetensors_part_splits_alike_from_both_buffers(case: str) -> None:
    body = SAFETENSORS_BODIES[case]
    boundary = body.split(b"\r\n", 1)[0].removeprefix(b"--") if case.startswith("httpx") else BOUNDARY
    assert _outcome(bytearray(body), boundary) == _outcome(body, boundary)


@pytest.mark.parametrize("case", ["the file first", "the request first", "the file alone"])
def test_the_file_part_is_the_upload_byte_for_byte(case: str) -> None:
    weights = split(bytearray(SAFETENSORS_BODIES[case]), BOUNDARY)["weights"]
    assert (weights.filename, bytes(weights.data)) == ("w.safetensors", UPLOAD)
