"""multipart/form-data bodies read whole, within the body limit, and split in place.

Starlette's form parser spools each file part to a temporary file (on disk above 1 MiB), which the route would
then read back. Here the body is read once into memory (``api.ingest.body.read_body``), python-multipart's parser
marks where each part's bytes lie, and each part is a ``memoryview`` of the body: no copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from api.echo import clean, echo
from api.ingest.body import read_body
from api.problems import ProblemError
from jacspec.models import FieldError


@dataclass
class Part:
    """One part: its form ``name``, the ``filename`` a file part carries, and its bytes."""

    name: str
    filename: str | None
    content_type: str | None
    data: memoryview


@dataclass
class _Reader:
    """python-multipart's callbacks, collecting the parts of one body."""

    body: bytes | bytearray
    max_parts: int
    parts: dict[str, Part] = field(default_factory=dict)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytes = b""
    header_value: bytes = b""
    pieces: list[memoryview] = field(default_factory=list)
    finished: bool = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.field,
            "on_header_value": self.value,
            "on_header_end": self.header_end,
            "on_part_data": self.data,
            "on_part_end": self.part_end,
            "on_end": self.done,
        }

    def part_begin(self) -> None:
        self.headers, self.pieces = {}, []
        if len(self.parts) >= self.max_parts:
            raise _bad(f"more than {self.max_parts} parts")

    def field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def data(self, data: bytes | bytearray, start: int, end: int) -> None:
        # Slices of the body, except for a lookbehind buffer python-multipart may hand back, which is copied.
        self.pieces.append(memoryview(data)[start:end] if data is self.body else memoryview(data[start:end]))

    def part_end(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise _bad('a part has no Content-Disposition "name"')
        name = options[b"name"].decode("utf-8", "replace")
        if name in self.parts:
            raise _bad(f"two parts are named {echo(name)}")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        content_type = self.headers.get(b"content-type")
        data = self.pieces[0] if len(self.pieces) == 1 else memoryview(b"".join(self.pieces))
        self.parts[name] = Part(name, filename, None if content_type is None else content_type.decode("latin-1"), data)

    def done(self) -> None:
        self.finished = True


async def read_parts(request: Request, limit: int, max_parts: int = 2) -> dict[str, Part]:
    """The parts of a multipart/form-data body by name; 400 for a body that is not one, 413 beyond ``limit``
    bytes."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise _bad("the Content-Type has no boundary")
    return split(await read_body(request, limit), boundary, max_parts)


def split(body: bytes | bytearray, boundary: bytes, max_parts: int = 2) -> dict[str, Part]:
    """The parts of a whole multipart/form-data ``body`` by name, each a view of ``body``; 400 if it is not one.

    ``body`` may be the bytearray ``read_body`` fills: python-multipart only finds, compares and slices what it is
    given, which a bytearray does as bytes do (its signature says ``bytes``; tests/api/test_multipart.py checks both
    give the same parts and the same errors).
    """
    reader = _Reader(body, max_parts)
    try:
        parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
        parser.write(body)  # type: ignore[arg-type]
    except FormParserError as exc:  # a framing error, or a boundary longer than python-multipart takes (256)
        raise _bad(clean(str(exc), 200)) from None
    if not reader.finished:
        raise _bad("the body ends before the closing boundary")
    return reader.parts


def _bad(reason: str) -> ProblemError:
    detail = f"the multipart body could not be read: {reason}"
    return ProblemError(400, "Bad Request", detail, errors=[FieldError(pointer="", detail=detail)])
