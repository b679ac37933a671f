"""Tensors as in the Open Inference Protocol v2: shape, datatype and row-major data, or base64 bytes."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from jacspec.models._base import ContractModel

Datatype = Literal["FP32", "FP64"]
ITEMSIZE: dict[str, int] = {"FP32": 4, "FP64": 8}


class Tensor(ContractModel):
    """A tensor: ``shape``, ``datatype`` and either ``data`` (row-major, flat or nested) or ``b64``
    (base64 of the little-endian bytes). NaN and infinities are refused."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"shape": [2, 3], "datatype": "FP32", "data": [[0.5, -0.1, 0.2], [0.0, 0.3, -0.4]]},
                {"shape": [2], "datatype": "FP64", "b64": "AAAAAAAA4D8AAAAAAADwvw=="},
            ]
        }
    )

    name: str | None = Field(None, description="Optional, as in the Open Inference Protocol; not used.")
    shape: list[Annotated[int, Field(ge=0)]] = Field(
        min_length=1, max_length=2, description="[rows, columns] or [length]."
    )
    datatype: Datatype = Field(
        "FP64", description="FP32 values are rounded to float32 on arrival; all arithmetic is float64."
    )
    data: list[float] | list[list[float]] | None = Field(None, description="Row-major values, flat or nested.")
    b64: str | None = Field(None, description="Base64 of the little-endian bytes (4 per FP32 value, 8 per FP64).")

    @property
    def size(self) -> int:
        """The number of elements the shape holds."""
        return math.prod(self.shape)

    @model_validator(mode="after")
    def _check_payload(self) -> Tensor:
        if (self.data is None) == (self.b64 is None):
            raise ValueError("give exactly one of `data` and `b64`")
        if self.b64 is not None:
            needed = self.size * ITEMSIZE[self.datatype]
            held = _base64_length(self.b64)
            if held != needed:
                raise ValueError(f"b64 holds {held} bytes but shape {self.shape} of {self.datatype} needs {needed}")
        else:
            _check_data_shape(self.data or [], self.shape)
        return self


def _base64_length(text: str) -> int:
    """Bytes that base64 ``text`` decodes to, from its length alone (the characters are checked on decoding)."""
    stripped = text.rstrip("=")
    return len(stripped) * 3 // 4


def _check_data_shape(data: list[float] | list[list[float]], shape: list[int]) -> None:
    if data and isinstance(data[0], list):
        rows = [len(row) if isinstance(row, list) else -1 for row in data]
        if len(shape) != 2 or len(data) != shape[0] or any(r != shape[1] for r in rows):
            raise ValueError(
                f"nested data of {len(data)} rows of lengths {sorted(set(rows))} does not match shape {shape}"
            )
    elif len(data) != math.prod(shape):
        raise ValueError(f"data holds {len(data)} values but shape {shape} needs {math.prod(shape)}")


def _tensor_or_list(value: object) -> str:
    return "list" if isinstance(value, list) else "tensor"


Matrix = Annotated[
    Annotated[Tensor, Tag("tensor")] | Annotated[list[list[float]], Tag("list")],
    Discriminator(_tensor_or_list),
    Field(description="A Tensor object, or a bare nested list [[...], ...] as shorthand (FP64)."),
]
"""A 2-D tensor or its nested-list shorthand."""

Vector = Annotated[
    Annotated[Tensor, Tag("tensor")] | Annotated[list[float], Tag("list")],
    Discriminator(_tensor_or_list),
    Field(description="A Tensor object, or a bare list [...] as shorthand (FP64)."),
]
"""A 1-D tensor or its list shorthand."""
