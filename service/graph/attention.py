"""The ``attention`` op: multi-head scaled dot-product self-attention, as torch.nn.MultiheadAttention (batch_first,
query = key = value = x, eval mode) computes it.

Per probe the input ``x`` is a sequence ``(T, d)`` and so is the output. With h heads of width e = d/h,

    Q = x·W_qᵀ + b_q,  K = x·W_kᵀ + b_k,  V = x·W_vᵀ + b_v              (T, d), split by columns into heads
    S = Q_j·K_jᵀ/√e   (−∞ where the causal mask hides key s > query t)      (T, T) per head j
    P = softmax(S) row by row,   O_j = P·V_j,   y = [O_1 … O_h]·W_oᵀ + b_o

Its Jacobian, through the softmax (dP = P ⊙ (dS − rowsum(P ⊙ dS)), the softmax's Jacobian diag(p) − p·pᵀ per row):

    dQ = dx·W_qᵀ, dK = dx·W_kᵀ, dV = dx·W_vᵀ,    dS = (dQ·Kᵀ + Q·dKᵀ)/√e,
    dO = dP·V + P·dV,    dy = [dO_1 … dO_h]·W_oᵀ

and its transpose, from the output's cotangent ū:

    Ō = ū·W_o,  P̄ = Ō·Vᵀ,  V̄ = Pᵀ·Ō,  S̄ = P ⊙ (P̄ − rowsum(P ⊙ P̄)),  Q̄ = S̄·K/√e,  K̄ = S̄ᵀ·Q/√e,
    ū·∂y/∂x = Q̄·W_q + K̄·W_k + V̄·W_v,

with the parameters' cotangents W̄_q = Σ_{b,t} Q̄_tᵀ·x_t, b̄_q = Σ_{b,t} Q̄_t (likewise K and V), W̄_o = Σ_{b,t} ū_tᵀ·O_t,
b̄_o = Σ_{b,t} ū_t.

Parameters: separately (``q_proj.weight``, ``q_proj.bias``, ``k_proj.…``, ``v_proj.…``, ``out_proj.weight``,
``out_proj.bias``, each bias optional), renamed to the model's own names with ``names`` (e.g. a BERT's
``query.weight``), or in torch's packed layout (``in_proj_weight`` (3d, d) = [W_q; W_k; W_v], ``in_proj_bias`` (3d),
``out_proj.weight``, ``out_proj.bias``) with ``Attention.from_packed``; the cotangents come back in the same layout.

There is no global Lipschitz bound: dot-product self-attention is not Lipschitz (Kim, Papamakarios & Mnih 2021,
"The Lipschitz constant of self-attention"): sup_x ‖∂y/∂x‖₂ = ∞. Where the scores stay balanced as x grows (e.g.
x = c·[x₁; −x₁] with x₁ᵀ·W_qᵀW_k·x₁ = 0, every score 0), the term dP·V grows like c².
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from service.errors import InvalidInputError, Location
from service.graph.op import Array, Linearised, Op, check_shape, finite_array

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
"""The four projections, by the names the separate layout gives them."""
CANONICAL = tuple(f"{p}.{kind}" for p in PROJECTIONS for kind in ("weight", "bias"))
"""Every parameter's name in the separate layout, in order."""
PACKED = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
"""torch.nn.MultiheadAttention's names."""


def _softmax(scores: Array) -> Array:
    """Row-wise softmax (last axis), −∞ entries giving 0."""
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


def _softmax_transpose(p: Array, cotangent: Array) -> Array:
    """P ⊙ (c − rowsum(P ⊙ c)): the softmax's Jacobian diag(p) − p·pᵀ (symmetric) applied to each row c."""
    return np.asarray(p * (cotangent - np.sum(p * cotangent, axis=-1, keepdims=True)))


class Attention(Op):
    """Multi-head self-attention y = [softmax(Q_j·K_jᵀ/√e)·V_j]_j·W_oᵀ + b_o (see the module's docstring)."""

    name: ClassVar[str] = "attention"
    lipschitz_note: ClassVar[str | None] = (
        "no global bound: dot-product self-attention is not Lipschitz (Kim, Papamakarios & Mnih 2021); "
        "‖∂y/∂x‖₂ grows like ‖x‖² where the scores stay balanced"
    )

    def __init__(
        self,
        parameters: Mapping[str, ArrayLike],
        *,
        num_heads: int,
        causal: bool = False,
        names: Mapping[str, str] | None = None,
        location: Location = (),
    ) -> None:
        """``parameters`` keyed by the model's names: ``names[c]`` for each separate-layout name c in ``names``, c
        itself otherwise; errors point at ``location + (name,)``."""
        renamed = {c: (names or {}).get(c, c) for c in CANONICAL}
        known = set(renamed.values())
        for name in parameters:
            if name not in known:
                raise InvalidInputError((*location, name), f"is not a parameter of attention (expected {known})")
        arrays = {c: finite_array(parameters[n], (*location, n)) for c, n in renamed.items() if n in parameters}
        self._setup(arrays, renamed, num_heads, causal, False, location)

    def _setup(
        self,
        arrays: Mapping[str, Array],
        names: dict[str, str],
        num_heads: int,
        causal: bool,
        packed: bool,
        location: Location,
    ) -> None:
        self.names, self.causal, self.packed, self.location = names, causal, packed, location
        self.weights = _Weights.checked(arrays, num_heads, self._located, location)

    @classmethod
    def from_packed(
        cls,
        parameters: Mapping[str, ArrayLike],
        *,
        num_heads: int,
        causal: bool = False,
        location: Location = (),
    ) -> Attention:
        """The op from torch's layout: ``in_proj_weight`` = [W_q; W_k; W_v], ``in_proj_bias``, ``out_proj.*``."""
        for name in parameters:
            if name not in PACKED:
                raise InvalidInputError((*location, name), f"is not a parameter of attention (expected {PACKED})")
        if "in_proj_weight" not in parameters:
            raise InvalidInputError((*location, "in_proj_weight"), "is missing")
        arrays: dict[str, Array] = {}
        for packed, kind in (("in_proj_weight", "weight"), ("in_proj_bias", "bias")):
            if packed in parameters:
                array = finite_array(parameters[packed], (*location, packed))
                if array.ndim < 1 or array.shape[0] % 3:
                    raise InvalidInputError((*location, packed), f"has shape {list(array.shape)}, not 3·d rows")
                arrays.update(zip((f"{p}.{kind}" for p in PROJECTIONS[:3]), np.split(array, 3), strict=True))
        for name in ("out_proj.weight", "out_proj.bias"):
            if name in parameters:
                arrays[name] = finite_array(parameters[name], (*location, name))
        op = cls.__new__(cls)
        op._setup(arrays, {c: c for c in CANONICAL}, num_heads, causal, True, location)
        return op

    def _located(self, canonical: str) -> Location:
        """Where the parameter with separate-layout name ``canonical`` sits in the request."""
        if self.packed and not canonical.startswith("out_proj"):
            return (*self.location, "in_proj_weight" if canonical.endswith("weight") else "in_proj_bias")
        return (*self.location, self.names[canonical])

    @property
    def parameters(self) -> Mapping[str, Array]:
        return self._layout({f"{p}.weight": w for p, w in self.weights.w.items()} | self.weights.biases())

    def _layout(self, separate: Mapping[str, Array]) -> dict[str, Array]:
        """Tensors keyed by separate-layout names, in the op's layout and names."""
        if not self.packed:
            return {self.names[c]: separate[c] for c in CANONICAL if c in separate}
        packed = {"in_proj_weight": np.concatenate([separate[f"{p}.weight"] for p in PROJECTIONS[:3]])}
        if "q_proj.bias" in separate:
            packed["in_proj_bias"] = np.concatenate([separate[f"{p}.bias"] for p in PROJECTIONS[:3]])
        return packed | {n: separate[n] for n in ("out_proj.weight", "out_proj.bias") if n in separate}

    @property
    def width(self) -> int:
        return int(self.weights.w["out_proj"].shape[0])

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        if len(input_shapes) != 1:
            raise InvalidInputError(self.location, f"takes one input, got {len(input_shapes)}")
        shape = input_shapes[0]
        if len(shape) != 2 or shape[0] < 1 or shape[1] != self.width:
            raise InvalidInputError(
                self.location, f"input of shape {list(shape)}, expected [sequence, {self.width}] with sequence ≥ 1"
            )
        return shape

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        self.output_shape([tuple(x.shape[1:]) for x in inputs])
        return _AttentionLinearised(self, np.asarray(inputs[0], dtype=np.float64))

    def lipschitz(self) -> float | None:
        return None


@dataclass(frozen=True)
class _Weights:
    """The projections' weights ``w[p]`` (d, d) and biases ``b[p]`` (d,) (zero where the model has none)."""

    w: dict[str, Array]
    b: dict[str, Array]
    present: frozenset[str]
    """The projections whose bias the model has."""
    heads: int

    @classmethod
    def checked(
        cls, arrays: Mapping[str, Array], heads: int, located: Callable[[str], Location], location: Location
    ) -> _Weights:
        """The weights, their shapes and the head count checked."""
        weight = arrays.get("out_proj.weight")
        if weight is None or weight.ndim != 2 or weight.shape[0] < 1:
            raise InvalidInputError(located("out_proj.weight"), "is missing or not a non-empty matrix")
        d = int(weight.shape[0])
        if heads < 1 or d % heads:
            raise InvalidInputError(location, f"num_heads {heads} does not divide d = {d}")
        for c in CANONICAL:
            if c.endswith("weight") and c not in arrays:
                raise InvalidInputError(located(c), "is missing")
            if c in arrays:
                check_shape(arrays[c], (d, d) if c.endswith("weight") else (d,), located(c))
        w = {p: arrays[f"{p}.weight"] for p in PROJECTIONS}
        b = {p: arrays.get(f"{p}.bias", np.zeros(d)) for p in PROJECTIONS}
        return cls(w, b, frozenset(p for p in PROJECTIONS if f"{p}.bias" in arrays), heads)

    def biases(self) -> dict[str, Array]:
        return {f"{p}.bias": self.b[p] for p in PROJECTIONS if p in self.present}

    def project(self, x: Array, p: str) -> Array:
        """x·W_pᵀ + b_p, split into heads: (B, h, T, e)."""
        return self.split(x @ self.w[p].T + self.b[p])

    def split(self, y: Array) -> Array:
        """(B, T, d) → (B, h, T, e), head j the columns j·e … (j + 1)·e − 1."""
        batch, steps, d = y.shape
        return y.reshape(batch, steps, self.heads, d // self.heads).transpose(0, 2, 1, 3)

    @staticmethod
    def merge(y: Array) -> Array:
        """(B, h, T, e) → (B, T, h·e), the inverse of ``split``."""
        batch, heads, steps, e = y.shape
        return y.transpose(0, 2, 1, 3).reshape(batch, steps, heads * e)


class _AttentionLinearised(Linearised):
    """The op at ``x``: Q, K, V per head, the attention P and the heads' outputs O (merged)."""

    def __init__(self, op: Attention, x: Array) -> None:
        self.op, self.x, w = op, x, op.weights
        self.q, self.k, self.v = (w.project(x, p) for p in PROJECTIONS[:3])
        self.scale = 1.0 / math.sqrt(self.q.shape[-1])
        scores = self.q @ self.k.swapaxes(-1, -2) * self.scale
        if op.causal:
            steps = x.shape[1]
            scores = np.where(np.triu(np.ones((steps, steps), dtype=bool), k=1), -np.inf, scores)
        self.p = _softmax(scores)
        self.o = w.merge(self.p @ self.v)
        self.output = self.o @ w.w["out_proj"].T + w.b["out_proj"]

    def jvp(self, tangents: Sequence[Array]) -> Array:
        (dx,) = tangents
        w = self.op.weights
        dq, dk, dv = (w.split(dx @ w.w[p].T) for p in PROJECTIONS[:3])
        ds = (dq @ self.k.swapaxes(-1, -2) + self.q @ dk.swapaxes(-1, -2)) * self.scale
        do = _softmax_transpose(self.p, ds) @ self.v + self.p @ dv
        return np.asarray(w.merge(do) @ w.w["out_proj"].T)

    def _backward(self, cotangent: Array) -> tuple[Array, dict[str, Array]]:
        """(ū·∂y/∂x, {separate-layout name: cotangent}) for the cotangent ū of y."""
        w = self.op.weights
        go = w.split(cotangent @ w.w["out_proj"])
        gs = _softmax_transpose(self.p, go @ self.v.swapaxes(-1, -2))
        projected = {
            "q_proj": w.merge(gs @ self.k) * self.scale,
            "k_proj": w.merge(gs.swapaxes(-1, -2) @ self.q) * self.scale,
            "v_proj": w.merge(self.p.swapaxes(-1, -2) @ go),
        }
        gx = sum((g @ w.w[p] for p, g in projected.items()), start=np.zeros_like(self.x))
        grads = {f"{p}.weight": np.einsum("btd,bte->de", g, self.x) for p, g in projected.items()}
        grads["out_proj.weight"] = np.einsum("btd,bte->de", cotangent, self.o)
        projected["out_proj"] = cotangent
        grads |= {f"{p}.bias": projected[p].sum(axis=(0, 1)) for p in w.present}
        return gx, grads

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return (self._backward(cotangent)[0],)

    def vjp_parameters(self, cotangent: Array) -> dict[str, Array]:
        return self.op._layout(self._backward(cotangent)[1])
