"""A graph network: ops wired into a DAG from one input tensor to one output tensor, its shapes checked, its
forward pass, and the Jacobian products of any stretch of it between two cut tensors.

Tensors are numbered by position: tensor 0 is the input, tensor k + 1 the output of node k (nodes in topological
order). A *cut* is a tensor that every input → output path passes through. With every node on such a path and the
nodes in topological order, tensor c is a cut exactly when no edge jumps over it — no node k ≥ c reads a tensor
i < c (a path input → … → i → node k avoids c, and conversely every path must land on c to cross position c). The
*blocks* are the stretches between consecutive cuts a < b: nodes a … b − 1, which read only tensors a … b − 1, so
that their Jacobian ∂t_b/∂t_a is composed from those nodes alone:

    jvp:  v_a = v,  v_{k+1} = Σ_i ∂f_k/∂x_i · v_{in_i(k)}           for k = a … b − 1, in order
    vjp:  ū_b = u,  ū_{in_i(k)} += ū_{k+1}·∂f_k/∂x_i               for k = b − 1 … a, in reverse

A ``Stretch`` holds what these sweeps need of a block and nothing else of the graph: what an executor's task on
another process is shipped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidInputError, Location
from service.graph.op import Array, Linearised, Op

Shape = tuple[int, ...]
INPUT = "input"


@dataclass(frozen=True)
class NodeSpec:
    """A node to build: its id, the ids it reads, where it sits in the request, and ``make(input_shapes)``, which
    builds its op (raising InvalidInputError located relative to the node)."""

    id: str
    inputs: tuple[str, ...] | None
    location: Location
    make: Callable[[Sequence[Shape]], Op]
    relocate: Callable[[Location], Location] = lambda location: location
    """Maps an op's relative error location to the node's field (e.g. a parameter name to ``params``)."""


@dataclass(frozen=True)
class GraphNode:
    id: str
    op: Op
    inputs: tuple[int, ...]
    """The tensors it reads (0 the input, k + 1 node k's output)."""
    location: Location


@dataclass(frozen=True)
class Block:
    """The nodes start … stop − 1, from cut tensor ``start`` to cut tensor ``stop``."""

    start: int
    stop: int


@dataclass(frozen=True)
class Graph:
    nodes: tuple[GraphNode, ...]
    shapes: tuple[Shape, ...]
    """One probe's shape of every tensor (index 0 the input)."""

    @property
    def output(self) -> int:
        return len(self.nodes)

    def size(self, tensor: int) -> int:
        return math.prod(self.shapes[tensor])

    def cuts(self) -> list[int]:
        """The cut tensors, in order: 0, …, the output (see the module docstring)."""
        lowest = len(self.nodes) + 1  # min over nodes k ≥ c of the tensors they read
        found = []
        for c in range(len(self.nodes), -1, -1):
            if c <= lowest:
                found.append(c)
            if c > 0:
                lowest = min(lowest, *self.nodes[c - 1].inputs)
        return found[::-1]

    def blocks(self) -> list[Block]:
        cuts = self.cuts()
        return [Block(a, b) for a, b in itertools.pairwise(cuts)]


def build_graph(input_shape: Shape, specs: Sequence[NodeSpec], output: str | None, where: Location) -> Graph:
    """The graph of ``specs``: references resolved (inputs default to the previous node), each op built on its
    input shapes and its output shape found; the output node last, every node on a path to it. Errors point at the
    node's field under ``where`` (e.g. ``network.graph``)."""
    index: dict[str, int] = {INPUT: 0}
    nodes: list[GraphNode] = []
    shapes: list[Shape] = [tuple(input_shape)]
    for k, spec in enumerate(specs):
        if spec.id in index:
            what = "is reserved for the graph's input" if spec.id == INPUT else "is not unique"
            raise InvalidInputError((*spec.location, "id"), f"node id {spec.id!r} {what}")
        inputs = _references(spec, index, k)
        op = _built(spec, [shapes[i] for i in inputs])
        arity = op.arity
        if arity is not None and len(inputs) != arity:
            raise InvalidInputError((*spec.location, "inputs"), f"{op.name} takes {arity} input(s), got {len(inputs)}")
        try:
            shapes.append(tuple(op.output_shape([shapes[i] for i in inputs])))
        except InvalidInputError as exc:
            raise InvalidInputError((*spec.location, *spec.relocate(exc.location)), exc.message) from None
        nodes.append(GraphNode(spec.id, op, inputs, spec.location))
        index[spec.id] = k + 1
    graph = Graph(tuple(nodes), tuple(shapes))
    _check_output(graph, output, index, where)
    return graph


def _references(spec: NodeSpec, index: dict[str, int], k: int) -> tuple[int, ...]:
    if spec.inputs is None:
        return (k,)
    found = []
    for j, name in enumerate(spec.inputs):
        if name not in index:
            raise InvalidInputError((*spec.location, "inputs", j), f"{name!r} is not an earlier node or 'input'")
        found.append(index[name])
    return tuple(found)


def _built(spec: NodeSpec, input_shapes: list[Shape]) -> Op:
    try:
        return spec.make(input_shapes)
    except InvalidInputError as exc:
        raise InvalidInputError((*spec.location, *spec.relocate(exc.location)), exc.message) from None


def _check_output(graph: Graph, output: str | None, index: dict[str, int], where: Location) -> None:
    """The output is the last node, and every node's output is read on the way to it."""
    if output is not None and index.get(output) != graph.output:
        raise InvalidInputError(
            (*where, "output"),
            f"output {output!r} must be the last node ({graph.nodes[-1].id!r}): nodes after it "
            "would lie on no path to it",
        )
    read = {i for node in graph.nodes for i in node.inputs}
    for k, node in enumerate(graph.nodes[:-1]):
        if k + 1 not in read:
            raise InvalidInputError(
                node.location, f"node {node.id!r} is read by no node: it lies on no path to the output"
            )


def linearise(graph: Graph, x: Array) -> tuple[list[Linearised], int | None]:
    """Every node linearised at probes ``x`` (probes on axis 0, each of the input's shape), in order; and the first
    node whose output is not finite (the pass stops there), else None."""
    tensors: list[Array] = [x]
    found: list[Linearised] = []
    for k, node in enumerate(graph.nodes):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            lin = node.op.linearise([tensors[i] for i in node.inputs])
        if not np.all(np.isfinite(lin.output)):
            return found, k
        found.append(lin)
        tensors.append(lin.output)
    return found, None


@dataclass(frozen=True)
class Stretch:
    """The nodes start … stop − 1 of a graph linearised at the probes: what the products of ∂t_stop/∂t_start need,
    and nothing else of the graph (an executor's task ships this alone): the nodes' linearisations, the tensors
    each reads, and one probe's shape of t_start."""

    block: Block
    lins: tuple[Linearised, ...]
    """lins[k − start]: node k's."""
    inputs: tuple[tuple[int, ...], ...]
    """inputs[k − start]: the tensors node k reads."""
    start_shape: Shape

    def jvp(self, v: Array) -> Array:
        """∂t_stop/∂t_start · v for every probe (v shaped like t_start, probes on axis 0): the forward sweep."""
        tangents: dict[int, Array] = {self.block.start: v}
        for k, (lin, reads) in enumerate(zip(self.lins, self.inputs, strict=True), start=self.block.start):
            tangents[k + 1] = lin.jvp([tangents[i] for i in reads])
        return tangents[self.block.stop]

    def vjp(self, u: Array) -> Array:
        """u·∂t_stop/∂t_start for every probe (u shaped like t_stop): the reverse sweep, cotangents summed where a
        tensor is read twice."""
        return self.pulled(u)[self.block.start]

    def pulled(self, u: Array, visit: Callable[[int, Array], None] | None = None) -> dict[int, Array]:
        """The reverse sweep from cotangent u of t_stop; ``visit(k, ū_{k+1})`` sees each node's output cotangent.
        Returns the cotangents left (at least t_start's)."""
        start, stop = self.block.start, self.block.stop
        cotangents: dict[int, Array] = {stop: u}
        for k in range(stop - 1, start - 1, -1):
            cotangent = cotangents.pop(k + 1, None)
            if cotangent is None:
                continue
            if visit is not None:
                visit(k, cotangent)
            for i, g in zip(self.inputs[k - start], self.lins[k - start].vjp(cotangent), strict=True):
                cotangents[i] = cotangents[i] + g if i in cotangents else g
        if start not in cotangents:
            cotangents[start] = np.zeros((len(u), *self.start_shape))
        return cotangents


def stretch(graph: Graph, lins: Sequence[Linearised], block: Block) -> Stretch:
    """The block's nodes of ``graph`` with their linearisations ``lins`` (every node's, in order)."""
    nodes = graph.nodes[block.start : block.stop]
    return Stretch(
        block, tuple(lins[block.start : block.stop]), tuple(node.inputs for node in nodes), graph.shapes[block.start]
    )


def parameter_gradients(graph: Graph, lins: Sequence[Linearised], u: Array) -> dict[int, dict[str, Array]]:
    """{node k: {θ: Σ_b ū_{k+1,b}·∂f_k/∂θ}} from the output's cotangent u (one reverse sweep of the whole graph)."""
    found: dict[int, dict[str, Array]] = {}

    def visit(k: int, cotangent: Array) -> None:
        grads = lins[k].vjp_parameters(cotangent)
        if grads:
            found[k] = grads

    stretch(graph, lins, Block(0, graph.output)).pulled(u, visit)
    return found
