"""Large numeric arrays parsed out of a JSON body in one pass, never as millions of Python floats.

pydantic-core turns ``[[0.1, …], …]`` into one Python float per number, and numpy then walks those floats
again: about 250 ns a number in all. simdjson parses the text with SIMD instructions, and an array of numbers is
copied straight from its tape into a float64 buffer: about 60 ns a number. ``lift`` returns the document as
Python objects with every rectangular numeric array of at least ``LIFT_MIN`` numbers replaced by a
:class:`~jacspec.models.tensor.ParsedArray`; the contract models validate that small skeleton.

Whatever this road cannot vouch for — text simdjson refuses, numbers it cannot hold, ragged rows — gives
``None``, and the caller validates the raw text with pydantic, which also words the errors.
"""

from __future__ import annotations

import numpy as np
import simdjson

from jacspec.models.tensor import ParsedArray

LIFT_MIN = 1024
"""Numeric arrays with fewer numbers than this stay Python lists."""


def lift(raw: bytes | bytearray) -> object | None:
    """The document with its large numeric arrays as ``ParsedArray``; ``None`` where pydantic must decide."""
    try:
        document = simdjson.Parser().parse(raw)
        walk = _Walk()
        skeleton = walk.value(document)
    except (ValueError, RuntimeError, RecursionError, _UndecidedError):
        return None
    # simdjson flattens arrays nested inside a numeric array into it; the count of brackets in the text (an
    # overcount when a string holds one, which only sends the body down pydantic's road) shows there are none.
    if raw.count(b"[") != walk.arrays:
        return None
    return skeleton


class _UndecidedError(Exception):
    """The walk met something whose meaning pydantic's road decides (a key given twice)."""


class _Walk:
    """The document as Python objects, numeric arrays lifted, counting the arrays it meets."""

    def __init__(self) -> None:
        self.arrays = 0

    def value(self, node: object) -> object:
        if isinstance(node, simdjson.Object):
            keys = list(node.keys())  # ``items()`` would convert the values whole, arrays and all
            if len(set(keys)) != len(keys):
                raise _UndecidedError
            return {key: self.value(node[key]) for key in keys}
        if isinstance(node, simdjson.Array):
            self.arrays += 1
            return self.numeric(node) or [self.value(item) for item in node]
        return node

    def numeric(self, array: simdjson.Array) -> ParsedArray | None:
        """``array`` as a float64 vector or matrix, if it holds at least ``LIFT_MIN`` numbers and only numbers."""
        try:
            values = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
        except TypeError:  # something other than a number inside
            return None
        if values.size < LIFT_MIN:
            return None
        rows = len(array)
        if not isinstance(array[0], simdjson.Array):
            return ParsedArray((rows,), values) if values.size == rows else None
        columns = len(array[0])
        if values.size != rows * columns or not all(isinstance(r, simdjson.Array) and len(r) == columns for r in array):
            return None
        self.arrays += rows
        return ParsedArray((rows, columns), values.reshape(rows, columns))
