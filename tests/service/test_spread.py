"""With an executor (threads here; a Dask cluster's tasks in tests/cluster), a chain whose layers' probes are
split into chunks, the graph analysis and the weight survey give the numbers of a run without one, byte for byte
(the encoded report); the survey reads a tensor only once there is room among IN_FLIGHT, and its first error in
order is the one raised; and service.spread.bounded keeps to its window and to the order of its errors."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from api.encode import encoded_report, encoded_survey
from api.ingest.graph import build, inline
from jacspec.models import GraphNetwork
from service import jacobian, lanczos, spectral
from service.activations import make_activation
from service.analysis import Options, analyse
from service.conv import Conv2d
from service.errors import InvalidInputError
from service.graph import analysis
from service.graph.analysis import analyse_graph
from service.linear import Dense, Identity
from service.network import Layer, Network
from service.probes import ProbeSpec, make_probes
from service.spread import bounded
from service.survey import IN_FLIGHT, survey
from service.verdict import Thresholds

RNG = np.random.default_rng(21)


class _Counting(ThreadPoolExecutor):
    """Threads that note the name of each task's function."""

    def __init__(self) -> None:
        super().__init__(2)
        self.names: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.names.append(fn.__name__)
        return super().submit(fn, *args, **kwargs)


def _chain() -> Network:
    """A convolution (3 × 3, formed or only applied), a 1 × 1 one (the pixels method), a wide and a tall dense
    layer (shared Gram, stack; or matrix Lanczos), a residual one and a last dense one: every method of
    service.jacobian, by DENSE_MAX_DIM."""
    rng = np.random.default_rng(2)
    tanh = make_activation("tanh")
    return Network(
        (
            Layer(Conv2d(rng.standard_normal((2, 3, 3, 3)) / 4, (6, 6), "zeros"), None, tanh),
            Layer(Conv2d(rng.standard_normal((2, 2, 1, 1)), (6, 6), "zeros"), rng.standard_normal(72) / 5, tanh),
            Layer(Dense(rng.standard_normal((40, 72)) / 8), None, tanh),
            Layer(Dense(rng.standard_normal((60, 40)) / 6), None, tanh),
            Layer(Dense(rng.standard_normal((60, 60)) / 8), None, tanh, Identity(60)),
            Layer(Dense(rng.standard_normal((30, 60)) / 8), None, tanh),
        )
    )


@pytest.mark.parametrize("dense_max_dim", [256, 8])
def test_a_chain_split_into_probe_chunks_is_the_chain_analysed_whole(
    monkeypatch: pytest.MonkeyPatch, dense_max_dim: int
) -> None:
    """Small chunks (5 probes in lockstep, STACK_MAX_ENTRIES lowered): each layer's 21 probes are several tasks,
    and the report is the same bytes as the layers' probes solved in one piece here."""
    monkeypatch.setattr(spectral, "DENSE_MAX_DIM", dense_max_dim)
    monkeypatch.setattr(lanczos, "chunk_for", lambda n: 5)
    monkeypatch.setattr(jacobian, "STACK_MAX_ENTRIES", 20_000)
    network = _chain()
    x, y = make_probes(ProbeSpec(count=21, scale=1.0), 108, 30)
    options = Options(spectrum="summary")
    here = encoded_report(analyse(network, x, y, options), "test", {}).json
    with _Counting() as executor:
        split = analyse(network, x, y, options, executor=executor, spread_min_flops=0.0)
    assert encoded_report(split, "test", {}).json == here
    assert executor.names.count("_weight_norm") == len(network.layers)
    assert executor.names.count("_layer_jacobian") > 2 * len(network.layers)


def _matrix(m: int, n: int) -> dict[str, Any]:
    return {"shape": [m, n], "data": RNG.normal(0, 1 / np.sqrt(n), size=(m, n)).ravel().tolist()}


GRAPH = {
    "input_shape": [8],
    "nodes": [
        {"id": "fc1", "op": "linear", "params": {"weight": _matrix(8, 8)}},
        {"id": "act", "op": "activation", "activation": "tanh"},
        {"id": "res", "op": "add", "inputs": ["input", "act"]},
        {"id": "grid", "op": "reshape", "shape": [2, 4]},
        {"id": "turn", "op": "permute", "dims": [1, 0]},
        {"id": "flat", "op": "flatten"},
        {"id": "both", "op": "concat", "inputs": ["res", "flat"]},
        {"id": "fc2", "op": "linear", "params": {"weight": _matrix(8, 16)}},
        {"id": "act2", "op": "activation", "activation": "gelu"},
        {"id": "fc3", "op": "linear", "params": {"weight": _matrix(3, 8)}},
    ],
}


def _report(executor: ThreadPoolExecutor | None, calls: list[tuple[int, int]]) -> bytes:
    graph = build(GraphNetwork.model_validate(GRAPH), inline)
    x, y = make_probes(ProbeSpec(count=5, scale=1.0), 8, 3)
    found = analyse_graph(
        graph, x, y, 1e-10, Thresholds(), progress=lambda done, total: calls.append((done, total)), executor=executor
    )
    assert len(found.blocks) > 2
    assert [row.name for row in found.survey.weights] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    return encoded_report(found, "test", {}).json


@pytest.mark.parametrize("wide", [False, True])
def test_a_graph_analysed_on_threads_is_the_graph_analysed_here(monkeypatch: pytest.MonkeyPatch, wide: bool) -> None:
    """Every block's norm (and, for an output wider than DENSE_MAX_DIM — 0 here — every stretch cut → output) a
    task: the report is the same bytes, and progress counts the blocks 1, 2, …, in order."""
    if wide:
        monkeypatch.setattr(analysis, "DENSE_MAX_DIM", 0)
    here: list[tuple[int, int]] = []
    threads: list[tuple[int, int]] = []
    expected = _report(None, here)
    with ThreadPoolExecutor(2) as executor:
        assert _report(executor, threads) == expected
    blocks = here[-1][1]
    assert here == threads == [(k, blocks) for k in range(1, blocks + 1)]


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {
        "embed.weight": rng.standard_normal((40, 12)),
        "norm.weight": rng.standard_normal(12),
        "attn.weight": rng.standard_normal((12, 12)) * 1e-3,
        "conv.weight": rng.standard_normal((6, 3, 3, 3)),
        "conv1d.weight": rng.standard_normal((5, 4, 3)),
        "fc.weight": rng.standard_normal((7, 12)) * 1e3,
        "head.weight": rng.standard_normal((3, 7)),
    }


class _Reads(Mapping[str, np.ndarray]):
    """A mapping that makes its arrays on access (as a file's lazy tensors do), noting how many results the
    survey had taken (its progress) at each read."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.tensors = tensors
        self.done = 0
        self.reads: list[tuple[str, int]] = []

    def progress(self, done: int, total: int) -> None:
        self.done = done

    def __getitem__(self, name: str) -> np.ndarray:
        self.reads.append((name, self.done))
        return self.tensors[name].copy()

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)


@pytest.mark.parametrize("mode", ["none", "full"])
def test_a_survey_on_threads_is_the_survey_here(mode: str) -> None:
    """The same rows (every number exact) in the same order, the vector set aside; each tensor read once, and
    the k-th (from 0) only once at least k − IN_FLIGHT + 1 before it had been surveyed or set aside."""
    here = survey(_tensors(), mode, where=("weights",))  # type: ignore[arg-type]
    reads = _Reads(_tensors())
    with ThreadPoolExecutor(2) as executor:
        found = survey(reads, mode, where=("weights",), progress=reads.progress, executor=executor)  # type: ignore[arg-type]
    assert found == here
    assert encoded_survey(found, {}, "test", {}).json == encoded_survey(here, {}, "test", {}).json
    assert [s.name for s in found.skipped] == ["norm.weight"]
    assert [name for name, _ in reads.reads] == list(_tensors())
    assert reads.done == len(_tensors())
    assert all(done >= k - IN_FLIGHT + 1 for k, (_, done) in enumerate(reads.reads))


def test_the_survey_window_holds_back_reads() -> None:
    """Without room the next tensor waits: with a single slot, the k-th is read once k tensors are done."""
    reads = _Reads({f"w{k}.weight": np.eye(3) * (k + 1) for k in range(6)})
    with ThreadPoolExecutor(2) as executor:
        rows = bounded(executor, np.linalg.norm, ((reads[name],) for name in reads), window=1)
        for k, value in enumerate(rows):
            reads.done = k + 1
            assert value == pytest.approx(np.sqrt(3) * (k + 1), rel=1e-15)
    assert [done for _, done in reads.reads] == list(range(6))


def test_the_first_error_in_order_is_raised() -> None:
    """A tensor whose norms overflow is refused by its task; a later tensor that cannot even be read is not the
    error raised (as without an executor: the tensors are taken in order)."""
    tensors = _tensors()
    tensors["attn.weight"] = np.full((12, 12), 1e308)

    class _Broken(_Reads):
        def __getitem__(self, name: str) -> np.ndarray:
            if name == "head.weight":
                raise InvalidInputError(("weights",), "tensor 'head.weight' cannot be read")
            return super().__getitem__(name)

    with pytest.raises(InvalidInputError) as here:
        survey(_Broken(tensors), where=("weights",))
    with ThreadPoolExecutor(2) as executor, pytest.raises(InvalidInputError) as threads:
        survey(_Broken(tensors), where=("weights",), executor=executor)
    assert threads.value.location == here.value.location == ("weights", "attn.weight")
    assert threads.value.message == here.value.message
    del tensors["attn.weight"]
    with ThreadPoolExecutor(2) as executor, pytest.raises(InvalidInputError) as unread:
        survey(_Broken(tensors), where=("weights",), executor=executor)
    assert unread.value.location == ("weights",)


def test_invalid_input_errors_cross_processes_whole() -> None:
    """pickle (a process pool's, or any executor's of other processes) keeps the location and the message."""
    error = pickle.loads(pickle.dumps(InvalidInputError(("weights", "fc.weight"), "too large")))
    assert isinstance(error, InvalidInputError)
    assert (error.location, error.message, str(error)) == (("weights", "fc.weight"), "too large", "too large")
