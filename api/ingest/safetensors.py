"""Reading a ``.safetensors`` file (a PyTorch ``state_dict``) without pickle: a header first, then the arrays.

The format: 8 bytes, the little-endian length N of a JSON header; N bytes of header mapping each tensor's
name to its ``dtype``, ``shape`` and ``data_offsets`` [begin, end) into the byte buffer that follows.
Everything the header claims is checked against the file before a single array is made, so a truncated file
or a header that lies about sizes is refused, and the sizes can be checked against the limits first. As the
format (and the reference ``safetensors`` library) requires, the tensors' bytes cover the buffer exactly, one
after another: no overlap, no hole, nothing after the last.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic_core import from_json

from api.echo import echo
from jacspec.models._bounds import MAX_WIDTH
from service.errors import InvalidInputError
from service.network import finite_float64
from service.survey import Planned, Skipped, plan
from service.text import counted

Array = NDArray[np.float64]
ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
"""The dtypes jacspec reads (widened to float64)."""
OTHER_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "I32": 4,
    "U32": 4,
    "I64": 8,
    "U64": 8,
}
"""The other dtypes of the safetensors format: a survey lists their tensors as skipped (BatchNorm's
num_batches_tracked is I64); the analysis of a chain refuses them."""
WHERE = ("weights",)


@dataclass(frozen=True)
class Entry:
    """One tensor of the file, as its header describes it (already checked against the file)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsFile:
    entries: dict[str, Entry]
    buffer: memoryview

    def array(self, name: str, executor: Executor | None = None) -> Array:
        """The tensor ``name`` as a float64 array of its own (float16, bfloat16 and float32 widen exactly), refused
        unless finite; widened as tasks of ``executor`` when given (service.network.finite_float64)."""
        entry = self.entries[name]
        raw = self.buffer[entry.begin : entry.end]
        if entry.dtype == "BF16":
            values = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            values = np.frombuffer(raw, dtype={"F16": "<f2", "F32": "<f4", "F64": "<f8"}[entry.dtype])
        try:
            return finite_float64(values.reshape(entry.shape), WHERE, copy=True, executor=executor)
        except InvalidInputError as exc:
            raise InvalidInputError(WHERE, f"tensor {echo(name)}: {exc.message}") from None


def header_length(blob: bytes | memoryview) -> int:
    """N, the header's length as the file's first 8 bytes state it (0 for a file too short to state it)."""
    return int.from_bytes(blob[:8], "little") if len(blob) >= 8 else 0


def parse(blob: bytes | memoryview, *, any_dtype: bool = False) -> SafetensorsFile:
    """Check the header against the file and return it with the buffer; no array is made yet. Tensors of a dtype
    jacspec does not read (OTHER_ITEMSIZE) are refused, unless ``any_dtype`` (see :func:`refuse_unread`)."""
    if len(blob) < 8:
        raise InvalidInputError(
            WHERE, f"not a safetensors file: {counted(len(blob), 'byte')}, fewer than its 8-byte header length"
        )
    length = header_length(blob)
    if length > len(blob) - 8:
        raise InvalidInputError(
            WHERE,
            f"the header claims {counted(length, 'byte')} but only {len(blob) - 8} follow: truncated, or not "
            "safetensors",
        )
    try:
        header = from_json(bytes(blob[8 : 8 + length]))
    except ValueError:
        raise InvalidInputError(WHERE, "the safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise InvalidInputError(WHERE, "the safetensors header must be a JSON object")
    buffer = memoryview(blob)[8 + length :]
    itemsize = {**ITEMSIZE, **OTHER_ITEMSIZE} if any_dtype else ITEMSIZE
    entries = {
        name: _entry(name, spec, len(buffer), itemsize) for name, spec in header.items() if name != "__metadata__"
    }
    _check_contiguous(entries, len(buffer))
    return SafetensorsFile(entries, buffer)


def refuse_unread(file: SafetensorsFile, layers: list[str] | None = None) -> None:
    """422 for the first tensor (in the header's order) of a dtype jacspec does not read, as :func:`parse` refuses
    it without ``any_dtype``: of any tensor, or of the layers' ``P.weight`` and ``P.bias`` when ``layers`` names
    them (the file's other tensors are not read)."""
    used = None if layers is None else {p + suffix for p in layers for suffix in (".weight", ".bias")}
    for entry in file.entries.values():
        if entry.dtype not in ITEMSIZE and (used is None or entry.name in used):
            raise _unread(entry.name, entry.dtype)


def _unread(name: str, dtype: object) -> InvalidInputError:
    return InvalidInputError(WHERE, f"tensor {echo(name)} has dtype {echo(dtype)}; jacspec reads {sorted(ITEMSIZE)}")


def _entry(name: str, spec: Any, buffer_size: int, itemsize: dict[str, int]) -> Entry:
    if not isinstance(spec, dict):
        raise InvalidInputError(WHERE, f"tensor {echo(name)}: its header entry must be an object")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in itemsize:
        raise _unread(name, dtype)
    if not isinstance(shape, list) or not all(_is_integer(n) and 0 <= n <= MAX_WIDTH for n in shape):
        raise InvalidInputError(
            WHERE, f"tensor {echo(name)}: shape must be a list of integers 0 … {MAX_WIDTH} (2^20, as a JSON width)"
        )
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_integer(o) for o in offsets)):
        raise InvalidInputError(WHERE, f"tensor {echo(name)}: data_offsets must be [begin, end]")
    begin, end = offsets
    if not 0 <= begin <= end <= buffer_size:
        raise InvalidInputError(
            WHERE, f"tensor {echo(name)}: data_offsets {echo(offsets)} lie outside the {buffer_size}-byte buffer"
        )
    needed = math.prod(shape) * itemsize[dtype]
    if end - begin != needed:
        raise InvalidInputError(
            WHERE,
            f"tensor {echo(name)}: shape {shape} of {dtype} needs {counted(needed, 'byte')}, its offsets give "
            f"{end - begin}",
        )
    return Entry(name, dtype, tuple(shape), begin, end)


def _is_integer(value: Any) -> bool:
    """A JSON integer: ``true`` and ``false`` are Python ints too, but not sizes or offsets."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_contiguous(entries: dict[str, Entry], buffer_size: int) -> None:
    """The tensors, in the order of their offsets, each begin where the one before ends, from 0 to the buffer's
    end."""
    end, previous = 0, None
    for entry in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin < end:
            raise InvalidInputError(WHERE, f"tensors {echo(previous)} and {echo(entry.name)} overlap in the buffer")
        if entry.begin > end:
            raise InvalidInputError(
                WHERE, f"bytes {end}–{entry.begin} of the buffer, before tensor {echo(entry.name)}, belong to no tensor"
            )
        end, previous = entry.end, entry.name
    if end != buffer_size:
        raise InvalidInputError(
            WHERE, f"bytes {end}–{buffer_size} of the buffer, after the last tensor, belong to no tensor"
        )


def layer_names(file: SafetensorsFile, names: list[str] | None) -> list[str]:
    """The layers' name prefixes, in order: as given, else every ``P.weight`` sorted naturally by P.

    Natural order compares the dot-separated parts of P as numbers where they are numbers, so ``nn.Sequential``'s
    ``0, 2, 10`` come in that order.
    """
    weights = {name.removesuffix(".weight") for name in file.entries if name.endswith(".weight")}
    if names is None:
        if not weights:
            raise InvalidInputError(
                WHERE,
                "the file holds no tensor named like '<layer>.weight'; for the weight survey of every matrix in it, "
                'send "survey": true',
            )
        return sorted(weights, key=_natural)
    for i, name in enumerate(names):
        if name not in weights:
            raise InvalidInputError(
                ("request", "network", "layers", i), f"the file has no tensor {echo(name + '.weight')}"
            )
    return names


def _natural(name: str) -> tuple[tuple[int, int, str], ...]:
    """The sort key of natural order: each dot-separated part made of ASCII digits compares as the number it writes
    (by its length without leading zeros, then its digits: no int() of a part of any length), before every other
    part, which compares as text (non-ASCII digits such as '²' or '٣' included)."""
    key = []
    for part in re.split(r"\.", name):
        if part.isascii() and part.isdigit():
            digits = part.lstrip("0")
            key.append((0, len(digits), digits))
        else:
            key.append((1, 0, part))
    return tuple(key)


def chain_shaped(file: SafetensorsFile) -> bool:
    """Whether the file reads as today's chain of layers: every tensor named ``P.weight`` or ``P.bias``, every
    ``P.weight`` a matrix (2-D)."""
    return all(
        (name.endswith(".weight") and len(entry.shape) == 2) or name.endswith(".bias")
        for name, entry in file.entries.items()
    )


def wants_survey(file: SafetensorsFile, survey: bool | None, layers: list[str] | None) -> bool:
    """The request's ``survey`` when given; else the analysis of a chain when ``layers`` are named, when the file is
    chain-shaped (:func:`chain_shaped`), or when no ``P.weight`` of it is a (non-empty) matrix (its errors then say
    why it is no chain, and how to ask for the survey); else the survey."""
    if survey is not None:
        return survey
    if layers is not None or chain_shaped(file):
        return False
    return any(
        name.endswith(".weight") and len(entry.shape) == 2 and 0 not in entry.shape
        for name, entry in file.entries.items()
    )


def survey_plan(file: SafetensorsFile) -> tuple[list[Planned], list[Skipped]]:
    """The tensors to survey and those skipped (service.survey.plan), each in natural order of the names; a tensor
    of a dtype jacspec does not read is skipped as not floating point."""
    readable, unread = [], []
    for name in sorted(file.entries, key=_natural):
        entry = file.entries[name]
        if entry.dtype in ITEMSIZE:
            readable.append((name, entry.shape))
        else:
            kind = "8-bit floating point" if entry.dtype.startswith("F8") else "not floating point"
            unread.append(Skipped(name, entry.shape, f"dtype {entry.dtype}: {kind}; jacspec reads {sorted(ITEMSIZE)}"))
    planned, skipped = plan(readable)
    return planned, sorted([*skipped, *unread], key=lambda s: _natural(s.name))


@dataclass(frozen=True)
class LazyTensors(Mapping[str, Array]):
    """The tensors ``names`` of a file as a mapping whose arrays are made on access (SafetensorsFile.array), so
    that a survey holds one at a time; ``seconds`` adds up the time spent making them."""

    file: SafetensorsFile
    names: tuple[str, ...]
    seconds: list[float]

    def __getitem__(self, name: str) -> Array:
        if name not in self.names:
            raise KeyError(name)
        started = time.perf_counter()
        array = self.file.array(name)
        self.seconds[0] += time.perf_counter() - started
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)
