"""Large ``b64`` strings of a JSON body decoded straight from its bytes, never made into Python strings.

pydantic-core makes a 22 MB base64 string into a 22 MB Python ``str`` (checking its UTF-8 and copying it), which
pybase64 then decodes: a 2048 × 2048 FP32 weight was measured spending 55 ms parsing and 45 ms decoding that way.
``lift`` finds each ``"b64": "…"`` of at least ``LIFT_MIN`` characters in the bytes, decodes it with pybase64
from a ``memoryview`` (validating every character) into a numpy buffer, and parses the rest of the text with
pydantic-core: the text with each such string's characters replaced by a short marker. In the document, each
marker becomes a :class:`~jacspec.models.tensor.DecodedB64` holding the decoded bytes.

Why the document is the body's: a span that pybase64's validating decoder accepts holds only base64
characters, and the marker only letters, digits and hyphens; neither holds a quote, a backslash or a control
character, so swapping one for the other moves no token boundary and changes only the content of the string
the span lies in. When that string's value is exactly the marker — found once, as the value of a ``"b64"``
key — the span was the whole string, and the body is the skeleton with the span in its place. Each marker
carries a random nonce, so the body itself cannot hold one. Anything else — a span pybase64 refuses (an
escape, a space, a bad character, bad padding), a marker missing (a key given twice) or found elsewhere — gives
``None``, and the caller parses the raw text with pydantic-core, whose road also words the errors.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pybase64
from pydantic_core import from_json

from jacspec.models.tensor import DecodedB64

LIFT_MIN = 4096
"""``b64`` strings with fewer characters than this stay Python strings."""

DECODE_CHUNK = 1 << 18
"""Characters decoded at a time (a multiple of 4): 192 KiB of bytes, which stay in cache."""

KEY = re.compile(rb'"b64"[ \t\n\r]*:[ \t\n\r]*"')
"""A ``b64`` key, its colon and the opening quote of its string value (JSON allows these four spaces)."""

MAX_KEYS = 4096
"""More ``"b64"`` keys than this (a body of countless tiny tensors) are left to pydantic-core whole."""


@dataclass(frozen=True)
class _Span:
    """The characters ``raw[start:end]`` of one large ``b64`` string, decoded, and the marker put in their place."""

    start: int
    end: int
    decoded: memoryview
    marker: str


def lift(raw: bytes | bytearray) -> object | None:
    """The document with its large ``b64`` strings as ``DecodedB64``; ``None`` where pydantic-core must decide."""
    spans = _spans(raw)
    if not spans:
        return None
    try:
        document = from_json(_skeleton(raw, spans))
    except ValueError:
        return None
    decoded = {span.marker: span.decoded for span in spans}
    found: set[str] = set()
    try:
        result = _replace(document, decoded, found)
    except (_UndecidedError, RecursionError):
        return None
    return result if len(found) == len(spans) else None


def _spans(raw: bytes | bytearray) -> list[_Span]:
    """Every large ``b64`` string of ``raw``, decoded; none when one of them is not plain base64, or when
    ``_strings`` gives up."""
    nonce = secrets.token_hex(16)
    spans: list[_Span] = []
    try:
        for start, end in _strings(raw):
            if end - start >= LIFT_MIN:
                decoded = decode(memoryview(raw)[start:end])
                spans.append(_Span(start, end, decoded, f"jacspec-b64-{nonce}-{len(spans)}"))
    except (_UndecidedError, ValueError):  # binascii.Error is a ValueError
        return []
    return spans


def _strings(raw: bytes | bytearray) -> Iterator[tuple[int, int]]:
    """The spans ``[start, end)`` between the quotes of what looks like each ``"b64": "…"`` of ``raw``.

    The search for the next key resumes after each string, so the strings themselves are only scanned for their
    closing quote (memchr) and by the decoder. An unterminated string, or more than ``MAX_KEYS`` keys, is undecided.
    """
    at = raw.find(b'"b64"')
    for _ in range(MAX_KEYS):
        if at < 0:
            return
        match = KEY.match(raw, at)
        if match is None:
            at = raw.find(b'"b64"', at + 1)
            continue
        end = raw.find(b'"', match.end())
        if end < 0:
            raise _UndecidedError
        yield match.end(), end
        at = raw.find(b'"b64"', end + 1)
    if at >= 0:
        raise _UndecidedError


def decode(text: memoryview) -> memoryview:
    """The bytes of base64 ``text``, as one ``pybase64.b64decode(text, validate=True)`` gives them, or its error.

    Decoded ``DECODE_CHUNK`` characters at a time into one numpy buffer: numpy asks for huge pages for so large an
    array, and each piece pybase64 returns is small enough to be written while in cache and to reuse the same
    memory. A 16 MiB result in a worker thread was measured taking 17 ms to first touch as one ``bytes`` and
    5 ms as a numpy array (a fresh page costs a host fault on this VM). Pieces of whole 4-character groups
    decode to what the whole text does; padding is allowed only at the very end, as in the whole text.
    """
    out = np.empty(len(text) // 4 * 3, dtype=np.uint8)
    written = 0
    for start in range(0, len(text), DECODE_CHUNK):
        piece = text[start : start + DECODE_CHUNK]
        if start + DECODE_CHUNK < len(text) and piece[-1] == ord("="):
            raise ValueError("base64 padding before the end of the text")
        decoded = pybase64.b64decode(piece, validate=True)
        out[written : written + len(decoded)] = np.frombuffer(decoded, dtype=np.uint8)
        written += len(decoded)
    return out.data[:written]


def _skeleton(raw: bytes | bytearray, spans: list[_Span]) -> bytes:
    """``raw`` with each span's characters replaced by its marker."""
    pieces: list[bytes | bytearray] = []
    previous = 0
    for span in spans:
        pieces += [raw[previous : span.start], span.marker.encode("ascii")]
        previous = span.end
    pieces.append(raw[previous:])
    return b"".join(pieces)


class _UndecidedError(Exception):
    """The text is left to pydantic-core: a marker turned up elsewhere than once as the whole value of a ``b64``
    key, a string has no end, or there are too many keys."""


def _replace(node: object, decoded: dict[str, memoryview], found: set[str]) -> object:
    """``node`` with each marker value of a ``b64`` key replaced by its decoded bytes, noting the markers found."""
    if isinstance(node, dict):
        return {key: _value(key, value, decoded, found) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace(item, decoded, found) for item in node]
    if isinstance(node, str) and node in decoded:
        raise _UndecidedError
    return node


def _value(key: str, value: object, decoded: dict[str, memoryview], found: set[str]) -> object:
    if key == "b64" and isinstance(value, str) and value in decoded:
        if value in found:
            raise _UndecidedError
        found.add(value)
        return DecodedB64(decoded[value])
    return _replace(value, decoded, found)
