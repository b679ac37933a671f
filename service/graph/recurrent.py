"""The recurrent ops ``rnn``, ``lstm`` and ``gru``: torch.nn.RNN/LSTM/GRU (batch_first) unrolled over the steps.

Per probe the input is a sequence ``x`` of shape ``(T, input_size)`` and the output the last layer's hidden states
at every step, ``(T, D·hidden_size)`` (D = 2 when bidirectional: the forward and the reverse direction's states
side by side, as torch returns them). The initial state is zero. Layer k > 0 reads layer k − 1's output.

Each (layer, direction) computes, from its input ``x_t`` and its previous hidden state ``h_{t−1}``,

    a_t = W_ih·x_t + b_ih,    r_t = W_hh·h_{t−1} + b_hh                (G·H rows: G gates of H units)

and then its cell (σ the logistic function, ⊙ the elementwise product; gate order as torch's):

    rnn    h_t = φ(a_t + r_t)                                           φ = tanh or relu, G = 1
    lstm   (i, f, g, o) = (σ, σ, tanh, σ)(a_t + r_t),                   G = 4
           c_t = f ⊙ c_{t−1} + i ⊙ g,    h_t = o ⊙ tanh(c_t)
    gru    ρ = σ(a_ρ + r_ρ),  z = σ(a_z + r_z),  n = tanh(a_n + ρ ⊙ r_n),  G = 3 (torch's r, z, n)
           h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

The Jacobian is that of the unrolled steps. Forward mode (``jvp``) carries the tangent of the state through the
steps in order: da_t = W_ih·dx_t, dr_t = W_hh·dh_{t−1}, and the cell's derivative maps (da_t, dr_t, dstate_{t−1})
to dstate_t, e.g. for the LSTM

    dc_t = df ⊙ c_{t−1} + f ⊙ dc_{t−1} + di ⊙ g + i ⊙ dg,    dh_t = do ⊙ tanh(c_t) + o ⊙ (1 − tanh²(c_t)) ⊙ dc_t

with di = i(1 − i)·(da + dr)_i, dg = (1 − g²)·(da + dr)_g, …. Reverse mode (``vjp``) is backpropagation through time:
the cotangent of h_t is the output's plus W_hhᵀ·ḡr_{t+1} from the step after, and the cell's transpose gives
(ḡa_t, ḡr_t, ḡstate_{t−1}); then ū·∂/∂x_t = W_ihᵀ·ḡa_t and the parameters' cotangents are

    W̄_ih = Σ_{b,t} ḡa_t·x_tᵀ,  b̄_ih = Σ_{b,t} ḡa_t,  W̄_hh = Σ_{b,t} ḡr_t·h_{t−1}ᵀ,  b̄_hh = Σ_{b,t} ḡr_t.

Parameters are named as torch names them: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``, with the suffix ``_reverse`` for the reverse direction.

Lipschitz bounds. For ``rnn`` (tanh and relu are both 1-Lipschitz) each direction of each layer has
‖dh_t‖ ≤ ‖W_ih‖₂·‖dx_t‖ + ‖W_hh‖₂·‖dh_{t−1}‖, so ‖dh_t‖ ≤ ‖W_ih‖₂·Σ_{s≤t} ‖W_hh‖₂^{t−s}·‖dx_s‖: the vector of the
norms is ‖W_ih‖₂ times a lower-triangular Toeplitz matrix with kernel (‖W_hh‖₂^k)_{k<T} applied to that of the dx_s,
whose 2-norm is at most the kernel's sum (Young's inequality). Hence

    L_direction = ‖W_ih‖₂ · Σ_{k=0}^{T−1} ‖W_hh‖₂^k,    L_layer = (Σ_directions L²)^{1/2},    L = ∏_layers L_layer.

It needs T: given ``steps``, the finite sum; otherwise the infinite one, 1/(1 − ‖W_hh‖₂), where every ‖W_hh‖₂ < 1,
and None where one is not. ``lstm`` and ``gru`` give None: their gates make the step Jacobians depend on the data, and
no bound is derived here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from service.errors import InvalidInputError, Location
from service.graph.op import Array, Linearised, Op, check_shape, finite_array

State = tuple[Array, ...]
"""A cell's state per probe: ``(h,)``, or ``(h, c)`` for the LSTM, each (B, H)."""
Cache = tuple[Array, ...]
"""What one step keeps for its derivative."""


def _sigmoid(z: Array) -> Array:
    return np.asarray(expit(z))


class _Cell(ABC):
    """One step of a recurrent cell: state_t from (a_t, r_t, state_{t−1}), with its derivative's products."""

    gates: ClassVar[int]
    states: ClassVar[int] = 1

    @abstractmethod
    def step(self, a: Array, r: Array, state: State) -> tuple[State, Cache]:
        """state_t and the step's cache."""

    @abstractmethod
    def tangent(self, cache: Cache, da: Array, dr: Array, dstate: State) -> State:
        """dstate_t from da_t, dr_t and dstate_{t−1}."""

    @abstractmethod
    def cotangent(self, cache: Cache, gstate: State) -> tuple[Array, Array, State]:
        """(ḡa_t, ḡr_t, ḡstate_{t−1}) from ḡstate_t; ḡstate_{t−1} leaves out the path through r_t (W_hh's)."""


@dataclass(frozen=True)
class _SimpleCell(_Cell):
    """h_t = φ(a_t + r_t); dh_t = φ'(z_t)·(da_t + dr_t); ḡa_t = ḡr_t = φ'(z_t)·ḡh_t."""

    nonlinearity: Literal["tanh", "relu"]
    gates: ClassVar[int] = 1

    def step(self, a: Array, r: Array, state: State) -> tuple[State, Cache]:
        z = a + r
        if self.nonlinearity == "tanh":
            h = np.tanh(z)
            return (h,), (1.0 - h * h,)
        return (np.maximum(z, 0.0),), ((z > 0.0).astype(np.float64),)

    def tangent(self, cache: Cache, da: Array, dr: Array, dstate: State) -> State:
        return (cache[0] * (da + dr),)

    def cotangent(self, cache: Cache, gstate: State) -> tuple[Array, Array, State]:
        gz = cache[0] * gstate[0]
        return gz, gz, (np.zeros_like(gz),)


class _LSTMCell(_Cell):
    """(i, f, g, o) = (σ, σ, tanh, σ)(a + r); c_t = f⊙c_{t−1} + i⊙g; h_t = o⊙tanh(c_t)."""

    gates: ClassVar[int] = 4
    states: ClassVar[int] = 2

    def step(self, a: Array, r: Array, state: State) -> tuple[State, Cache]:
        zi, zf, zg, zo = np.split(a + r, 4, axis=-1)
        i, f, g, o = _sigmoid(zi), _sigmoid(zf), np.tanh(zg), _sigmoid(zo)
        c_prev = state[1]
        c = f * c_prev + i * g
        tc = np.tanh(c)
        return (o * tc, c), (i, f, g, o, c_prev, tc)

    def tangent(self, cache: Cache, da: Array, dr: Array, dstate: State) -> State:
        i, f, g, o, c_prev, tc = cache
        zi, zf, zg, zo = np.split(da + dr, 4, axis=-1)
        di, df, dg, do = i * (1.0 - i) * zi, f * (1.0 - f) * zf, (1.0 - g * g) * zg, o * (1.0 - o) * zo
        dc = df * c_prev + f * dstate[1] + di * g + i * dg
        return (do * tc + o * (1.0 - tc * tc) * dc, dc)

    def cotangent(self, cache: Cache, gstate: State) -> tuple[Array, Array, State]:
        i, f, g, o, c_prev, tc = cache
        gh, gc_next = gstate
        gc = gc_next + gh * o * (1.0 - tc * tc)
        gz = np.concatenate(
            [gc * g * i * (1.0 - i), gc * c_prev * f * (1.0 - f), gc * i * (1.0 - g * g), gh * tc * o * (1.0 - o)],
            axis=-1,
        )
        return gz, gz, (np.zeros_like(gh), gc * f)


class _GRUCell(_Cell):
    """ρ = σ(a_ρ + r_ρ), z = σ(a_z + r_z), n = tanh(a_n + ρ⊙r_n); h_t = (1 − z)⊙n + z⊙h_{t−1}."""

    gates: ClassVar[int] = 3

    def step(self, a: Array, r: Array, state: State) -> tuple[State, Cache]:
        a_r, a_z, a_n = np.split(a, 3, axis=-1)
        r_r, r_z, r_n = np.split(r, 3, axis=-1)
        rho, z = _sigmoid(a_r + r_r), _sigmoid(a_z + r_z)
        n = np.tanh(a_n + rho * r_n)
        h_prev = state[0]
        return ((1.0 - z) * n + z * h_prev,), (rho, z, n, r_n, h_prev)

    def tangent(self, cache: Cache, da: Array, dr: Array, dstate: State) -> State:
        rho, z, n, r_n, h_prev = cache
        da_r, da_z, da_n = np.split(da, 3, axis=-1)
        dr_r, dr_z, dr_n = np.split(dr, 3, axis=-1)
        drho = rho * (1.0 - rho) * (da_r + dr_r)
        dz = z * (1.0 - z) * (da_z + dr_z)
        dn = (1.0 - n * n) * (da_n + drho * r_n + rho * dr_n)
        return (dz * (h_prev - n) + (1.0 - z) * dn + z * dstate[0],)

    def cotangent(self, cache: Cache, gstate: State) -> tuple[Array, Array, State]:
        rho, z, n, r_n, h_prev = cache
        gh = gstate[0]
        gn = gh * (1.0 - z) * (1.0 - n * n)
        g_rho = gn * r_n * rho * (1.0 - rho)
        g_z = gh * (h_prev - n) * z * (1.0 - z)
        return np.concatenate([g_rho, g_z, gn], axis=-1), np.concatenate([g_rho, g_z, gn * rho], axis=-1), (gh * z,)


@dataclass(frozen=True)
class _Direction:
    """One direction of one layer: the sequence map (B, T, n) → (B, T, H), reversed in time if ``reverse``."""

    cell: _Cell
    weight_ih: Array
    weight_hh: Array
    bias_ih: Array
    bias_hh: Array
    reverse: bool

    def flip(self, x: Array) -> Array:
        return x[:, ::-1] if self.reverse else x

    def linearise(self, x: Array) -> _DirectionTrace:
        xs = self.flip(x)
        a = xs @ self.weight_ih.T + self.bias_ih
        batch, hidden = x.shape[0], self.weight_hh.shape[1]
        state: State = tuple(np.zeros((batch, hidden)) for _ in range(self.cell.states))
        hs, caches = [state[0]], []
        for t in range(x.shape[1]):
            state, cache = self.cell.step(a[:, t], state[0] @ self.weight_hh.T + self.bias_hh, state)
            hs.append(state[0])
            caches.append(cache)
        return _DirectionTrace(self, xs, np.stack(hs, axis=1), caches)


@dataclass(frozen=True)
class _DirectionTrace:
    """A direction at one input: ``states[:, t]`` is h_t (h_0 = 0), ``caches[t]`` step t + 1's cache."""

    direction: _Direction
    inputs: Array
    states: Array
    caches: list[Cache]

    @property
    def output(self) -> Array:
        return self.direction.flip(self.states[:, 1:])

    def jvp(self, tangent: Array) -> Array:
        d = self.direction
        da = d.flip(tangent) @ d.weight_ih.T
        dstate: State = tuple(np.zeros_like(self.states[:, 0]) for _ in range(d.cell.states))
        dhs = []
        for t, cache in enumerate(self.caches):
            dstate = d.cell.tangent(cache, da[:, t], dstate[0] @ d.weight_hh.T, dstate)
            dhs.append(dstate[0])
        return d.flip(np.stack(dhs, axis=1))

    def backward(self, cotangent: Array) -> tuple[Array, dict[str, Array]]:
        """Backpropagation through time: (ū·∂y/∂x, {weight_ih, weight_hh, bias_ih, bias_hh: their cotangents})."""
        d = self.direction
        gy = d.flip(cotangent)
        ga = np.empty((*gy.shape[:2], d.weight_hh.shape[0]))
        gr = np.empty_like(ga)
        gstate: State = tuple(np.zeros_like(gy[:, 0]) for _ in range(d.cell.states))
        for t in reversed(range(gy.shape[1])):
            ga[:, t], gr[:, t], prev = d.cell.cotangent(self.caches[t], (gstate[0] + gy[:, t], *gstate[1:]))
            gstate = (prev[0] + gr[:, t] @ d.weight_hh, *prev[1:])
        grads = {
            "weight_ih": np.einsum("btg,btn->gn", ga, self.inputs),
            "weight_hh": np.einsum("btg,bth->gh", gr, self.states[:, :-1]),
            "bias_ih": ga.sum(axis=(0, 1)),
            "bias_hh": gr.sum(axis=(0, 1)),
        }
        return d.flip(ga @ d.weight_ih), grads


class _RecurrentLinearised(Linearised):
    """The stack at one input: each layer's directions' traces, bottom first."""

    def __init__(self, op: _Recurrent, traces: list[list[_DirectionTrace]]) -> None:
        self.op = op
        self.traces = traces
        self.output = np.concatenate([trace.output for trace in traces[-1]], axis=-1)

    def jvp(self, tangents: Sequence[Array]) -> Array:
        (v,) = tangents
        for layer in self.traces:
            v = np.concatenate([trace.jvp(v) for trace in layer], axis=-1)
        return v

    def _backward(self, cotangent: Array) -> tuple[Array, dict[str, Array]]:
        grads: dict[str, Array] = {}
        u = cotangent
        for k in reversed(range(len(self.traces))):
            parts = np.split(u, len(self.traces[k]), axis=-1)
            u = np.zeros_like(self.traces[k][0].inputs)
            for trace, part, suffix in zip(self.traces[k], parts, _SUFFIXES, strict=False):
                gx, direction_grads = trace.backward(part)
                u = u + gx
                grads.update({f"{kind}_l{k}{suffix}": g for kind, g in direction_grads.items()})
        return u, {name: grads[name] for name in self.op.parameters}

    def vjp(self, cotangent: Array) -> tuple[Array, ...]:
        return (self._backward(cotangent)[0],)

    def vjp_parameters(self, cotangent: Array) -> dict[str, Array]:
        return self._backward(cotangent)[1]


_SUFFIXES = ("", "_reverse")


class _Recurrent(Op):
    """A stack of ``num_layers`` recurrent layers of one cell kind (see the module's docstring)."""

    arity: ClassVar[int | None] = 1

    def __init__(
        self,
        parameters: Mapping[str, ArrayLike],
        *,
        num_layers: int = 1,
        bias: bool = True,
        bidirectional: bool = False,
        steps: int | None = None,
        location: Location = (),
    ) -> None:
        """``parameters`` by torch's names; errors point at ``location + (name,)`` (``location`` for the rest)."""
        if num_layers < 1:
            raise InvalidInputError(location, f"num_layers is {num_layers}, must be at least 1")
        if steps is not None and steps < 1:
            raise InvalidInputError(location, f"steps is {steps}, must be at least 1")
        self.cell, self.num_layers, self.bidirectional, self.steps = self._cell(), num_layers, bidirectional, steps
        self.location = location
        names = _names(num_layers, bias, bidirectional)
        for name in parameters:
            if name not in names:
                raise InvalidInputError((*location, name), f"is not a parameter of this {self.name} (expected {names})")
        missing = [name for name in names if name not in parameters]
        if missing:
            raise InvalidInputError((*location, missing[0]), "is missing")
        self._parameters = {name: finite_array(parameters[name], (*location, name)) for name in names}
        self.layers = self._build(bias)

    @abstractmethod
    def _cell(self) -> _Cell:
        """The cell every layer runs."""

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def hidden_size(self) -> int:
        weight = self._parameters["weight_hh_l0"]
        return int(weight.shape[1]) if weight.ndim == 2 else 0

    @property
    def input_size(self) -> int:
        weight = self._parameters["weight_ih_l0"]
        return int(weight.shape[1]) if weight.ndim == 2 else 0

    def _build(self, bias: bool) -> list[list[_Direction]]:
        """The directions of every layer, their parameters' shapes checked."""
        rows, hidden = self.cell.gates * self.hidden_size, self.hidden_size
        if hidden < 1 or self.input_size < 1:
            name = "weight_hh_l0" if hidden < 1 else "weight_ih_l0"
            raise InvalidInputError((*self.location, name), "must be a matrix with at least one column")
        layers = []
        for k in range(self.num_layers):
            width = self.input_size if k == 0 else self.directions * hidden
            layer = []
            for suffix in _SUFFIXES[: self.directions]:
                shapes = {
                    "weight_ih": (rows, width),
                    "weight_hh": (rows, hidden),
                    "bias_ih": (rows,),
                    "bias_hh": (rows,),
                }
                arrays = {}
                for kind, shape in shapes.items():
                    name = f"{kind}_l{k}{suffix}"
                    arrays[kind] = self._parameters[name] if name in self._parameters else np.zeros(shape)
                    check_shape(arrays[kind], shape, (*self.location, name))
                layer.append(_Direction(self.cell, reverse=suffix == "_reverse", **arrays))
            layers.append(layer)
        return layers

    @property
    def parameters(self) -> Mapping[str, Array]:
        return self._parameters

    def output_shape(self, input_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        if len(input_shapes) != 1:
            raise InvalidInputError(self.location, f"takes one input, got {len(input_shapes)}")
        shape = input_shapes[0]
        if len(shape) != 2 or shape[0] < 1 or shape[1] != self.input_size:
            raise InvalidInputError(
                self.location, f"input of shape {list(shape)}, expected [steps, {self.input_size}] with steps ≥ 1"
            )
        if self.steps is not None and shape[0] != self.steps:
            raise InvalidInputError(self.location, f"input has {shape[0]} steps, the op was built for {self.steps}")
        return (shape[0], self.directions * self.hidden_size)

    def linearise(self, inputs: Sequence[Array]) -> Linearised:
        self.output_shape([tuple(x.shape[1:]) for x in inputs])
        x = np.asarray(inputs[0], dtype=np.float64)
        traces = []
        for layer in self.layers:
            traces.append([direction.linearise(x) for direction in layer])
            x = np.concatenate([trace.output for trace in traces[-1]], axis=-1)
        return _RecurrentLinearised(self, traces)

    def lipschitz(self) -> float | None:
        return None


def _names(num_layers: int, bias: bool, bidirectional: bool) -> list[str]:
    """torch's parameter names, in its order."""
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if bias else ("weight_ih", "weight_hh")
    suffixes = _SUFFIXES if bidirectional else _SUFFIXES[:1]
    return [f"{kind}_l{k}{suffix}" for k in range(num_layers) for suffix in suffixes for kind in kinds]


class RNN(_Recurrent):
    """torch.nn.RNN: h_t = φ(W_ih·x_t + b_ih + W_hh·h_{t−1} + b_hh), φ = tanh or relu (see the module docstring)."""

    name: ClassVar[str] = "rnn"
    lipschitz_note: ClassVar[str | None] = (
        "∏ over layers of (Σ over directions of (‖W_ih‖₂·Σ_{k<T} ‖W_hh‖₂^k)²)^½, φ being 1-Lipschitz; with T unknown, "
        "the infinite sum 1/(1 − ‖W_hh‖₂), only where every ‖W_hh‖₂ < 1"
    )

    def __init__(
        self,
        parameters: Mapping[str, ArrayLike],
        *,
        nonlinearity: str = "tanh",
        num_layers: int = 1,
        bias: bool = True,
        bidirectional: bool = False,
        steps: int | None = None,
        location: Location = (),
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise InvalidInputError(location, f"nonlinearity is {nonlinearity!r}, must be 'tanh' or 'relu'")
        self.nonlinearity: Literal["tanh", "relu"] = "tanh" if nonlinearity == "tanh" else "relu"
        super().__init__(
            parameters,
            num_layers=num_layers,
            bias=bias,
            bidirectional=bidirectional,
            steps=steps,
            location=location,
        )

    def _cell(self) -> _Cell:
        return _SimpleCell(self.nonlinearity)

    def lipschitz(self) -> float | None:
        """∏_layers (Σ_directions (‖W_ih‖₂·S)²)^½ with S = Σ_{k<T} ‖W_hh‖₂^k (or 1/(1 − ‖W_hh‖₂) for unknown T)."""
        bound = 1.0
        for layer in self.layers:
            squares = 0.0
            for direction in layer:
                series = _geometric(float(np.linalg.norm(direction.weight_hh, 2)), self.steps)
                if series is None:
                    return None
                squares += (float(np.linalg.norm(direction.weight_ih, 2)) * series) ** 2
            bound *= float(np.sqrt(squares))
        return bound


def _geometric(ratio: float, steps: int | None) -> float | None:
    """Σ_{k<steps} ratio^k; for steps None the infinite sum 1/(1 − ratio), None where ratio ≥ 1."""
    if steps is None:
        return 1.0 / (1.0 - ratio) if ratio < 1.0 else None
    if ratio == 1.0:
        return float(steps)
    return float((1.0 - ratio**steps) / (1.0 - ratio))


class LSTM(_Recurrent):
    """torch.nn.LSTM (gates i, f, g, o; no proj_size): see the module docstring for the step and its Jacobian."""

    name: ClassVar[str] = "lstm"
    lipschitz_note: ClassVar[str | None] = "no bound is given: the gates make each step's Jacobian data-dependent"

    def _cell(self) -> _Cell:
        return _LSTMCell()


class GRU(_Recurrent):
    """torch.nn.GRU (gates r, z, n with r applied to W_hn·h + b_hn): see the module docstring."""

    name: ClassVar[str] = "gru"
    lipschitz_note: ClassVar[str | None] = "no bound is given: the gates make each step's Jacobian data-dependent"

    def _cell(self) -> _Cell:
        return _GRUCell()
