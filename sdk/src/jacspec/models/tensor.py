"""Tensors as in the Open Inference Protocol v2: shape, datatype and row-major data, or base64 bytes."""

from __future__ import annotations

import base64
import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from jacspec._text import counted
from jacspec.models._base import ContractModel
from jacspec.models._bounds import MAX_NAME, MAX_WIDTH

Dimension = Annotated[int, Field(ge=0, le=MAX_WIDTH)]
"""A tensor dimension: 0 … 2^20."""

Datatype = Literal["FP32", "FP64"]
ITEMSIZE: dict[str, int] = {"FP32": 4, "FP64": 8}
B64_ABOVE = 1024
"""``Tensor.from_numpy`` sends arrays with more elements than this as base64 bytes."""


Floats = Annotated[list[float], Field(fail_fast=True)]
"""A list of numbers whose validation stops at the first bad one: a body of a million bad values is refused
with one error in microseconds, not a million listed over seconds."""
Rows = Annotated[list[Floats], Field(fail_fast=True)]


def _flat_or_nested(value: object) -> str:
    return "nested" if isinstance(value, list) and value and isinstance(value[0], list) else "flat"


Values = Annotated[
    Annotated[Floats, Tag("flat")] | Annotated[Rows, Tag("nested")],
    Discriminator(_flat_or_nested),
]
"""Row-major values: flat ``[...]`` or nested ``[[...], ...]``."""


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

    NDIMS: ClassVar[tuple[int, ...]] = (1, 2)

    name: str | None = Field(
        None,
        max_length=MAX_NAME,
        description="Optional, as in the Open Inference Protocol; not used (≤ 256 characters).",
    )
    shape: list[Dimension] = Field(
        min_length=1, max_length=2, description="[rows, columns] or [length]; each at most 2^20."
    )
    datatype: Datatype = Field(
        "FP64", description="FP32 values are rounded to float32 on arrival; all arithmetic is float64."
    )
    data: Values | None = Field(None, description="Row-major values, flat or nested.")
    b64: str | None = Field(None, description="Base64 of the little-endian bytes (4 per FP32 value, 8 per FP64).")

    @property
    def size(self) -> int:
        """The number of elements the shape holds."""
        return math.prod(self.shape)

    @classmethod
    def from_numpy(cls, array: Any, *, b64: bool | None = None) -> Tensor:
        """A tensor of a 1-D or 2-D numpy array (4-D for a KernelTensor; numpy is imported only here).

        float32 (and float16/bfloat16, widened) arrays become FP32, everything else FP64. ``b64`` sends the raw
        little-endian bytes, base64-encoded; by default it is used above 1024 elements, where it is far smaller and
        faster to parse than JSON numbers and exact to the last bit.
        """
        import numpy as np

        values = np.asarray(array)
        if values.ndim not in cls.NDIMS:
            raise ValueError(
                f"a {cls.__name__} must be {'-D or '.join(map(str, cls.NDIMS))}-D; got shape {list(values.shape)}"
            )
        datatype: Datatype = "FP32" if values.dtype.kind == "f" and values.dtype.itemsize <= 4 else "FP64"
        values = values.astype("<f4" if datatype == "FP32" else "<f8")
        if b64 if b64 is not None else values.size > B64_ABOVE:
            encoded = base64.b64encode(np.ascontiguousarray(values).tobytes()).decode("ascii")
            return cls(shape=list(values.shape), datatype=datatype, b64=encoded)
        return cls(shape=list(values.shape), datatype=datatype, data=values.ravel().tolist())

    def to_numpy(self) -> Any:
        """The tensor as a numpy array of its datatype (float32 or float64), in its shape."""
        import numpy as np

        dtype = np.dtype("<f4" if self.datatype == "FP32" else "<f8")
        if self.b64 is not None:
            return np.frombuffer(base64.b64decode(self.b64, validate=True), dtype=dtype).reshape(self.shape).copy()
        return np.asarray(self.data, dtype=dtype).reshape(self.shape)

    @model_validator(mode="after")
    def _check_payload(self) -> Tensor:
        if (self.data is None) == (self.b64 is None):
            raise ValueError("give exactly one of `data` and `b64`")
        if self.b64 is not None:
            needed = self.size * ITEMSIZE[self.datatype]
            held = _base64_length(self.b64)
            if held != needed:
                raise ValueError(
                    f"b64 holds {counted(held, 'byte')} but shape {self.shape} of {self.datatype} needs {needed}"
                )
        else:
            _check_data_shape(self.data or [], self.shape)
        return self


def _base64_length(text: str) -> int:
    """Bytes that base64 ``text`` decodes to, from its length alone (the characters are checked on decoding)."""
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return (len(text) - padding) * 3 // 4


def _check_data_shape(data: list[float] | list[list[float]], shape: list[int]) -> None:
    if data and isinstance(data[0], list):
        rows = [len(row) if isinstance(row, list) else -1 for row in data]
        if len(shape) != 2 or len(data) != shape[0] or any(r != shape[1] for r in rows):
            raise ValueError(
                f"nested data of {counted(len(data), 'row')} of lengths {sorted(set(rows))} does not match shape "
                f"{shape}"
            )
    elif len(data) != math.prod(shape):
        raise ValueError(f"data holds {counted(len(data), 'value')} but shape {shape} needs {math.prod(shape)}")


def rows_of_array(value: object) -> object:
    """A numpy array or torch tensor of probes (anything with ``__array__``) as a 2-D :class:`Tensor`: axis 0 the
    probes, each row one probe's values flattened row-major (an image batch [N, C, H, W] gives [N, C·H·W]);
    anything else unchanged, for the model to validate. torch tensors are detached and moved to the CPU (float16
    and bfloat16 widened to float32, exactly); numpy is imported only for such values."""
    if isinstance(value, list | dict | str | Tensor) or value is None:
        return value
    if all(hasattr(value, name) for name in ("detach", "cpu", "numpy")):  # a torch.Tensor, without importing torch
        tensor: Any = value.detach().cpu()  # type: ignore[attr-defined]
        if str(tensor.dtype) in ("torch.float16", "torch.bfloat16"):
            tensor = tensor.float()
        value = tensor.numpy()
    if not hasattr(value, "__array__"):
        return value
    import numpy as np

    array = np.asarray(value)
    if array.ndim < 2 or array.shape[0] == 0:
        raise ValueError(
            f"an array of probes needs the probes on axis 0 and each probe's values after it, [count, ...]; got shape "
            f"{list(array.shape)} (one probe x is x[None])"
        )
    return Tensor.from_numpy(array.reshape(array.shape[0], -1))


def _tensor_or_list(value: object) -> str:
    return "list" if isinstance(value, list) else "tensor"


Matrix = Annotated[
    Annotated[Tensor, Tag("tensor")] | Annotated[Rows, Tag("list")],
    Discriminator(_tensor_or_list),
    Field(description="A Tensor object, or a bare nested list [[...], ...] as shorthand (FP64)."),
]
"""A 2-D tensor or its nested-list shorthand."""

Vector = Annotated[
    Annotated[Tensor, Tag("tensor")] | Annotated[Floats, Tag("list")],
    Discriminator(_tensor_or_list),
    Field(description="A Tensor object, or a bare list [...] as shorthand (FP64)."),
]
"""A 1-D tensor or its list shorthand."""


class KernelTensor(Tensor):
    """A convolution kernel [c_out, c_in, kh, kw], as torch.nn.Conv2d's weight: flat row-major ``data`` or ``b64``."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"shape": [1, 1, 2, 2], "datatype": "FP32", "data": [0.5, -0.1, 0.2, 0.0]}]}
    )
    NDIMS: ClassVar[tuple[int, ...]] = (4,)

    shape: list[Dimension] = Field(min_length=4, max_length=4, description="[c_out, c_in, kh, kw]; each at most 2^20.")
