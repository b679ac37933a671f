"""service.graph.attention against torch.nn.MultiheadAttention (float64, batch_first, q = k = v = x, the same
weights): the forward pass, torch.func.jvp and torch.func.vjp on random tangents and cotangents, autograd's gradients
of ⟨u, y⟩ for every projection, in torch's packed layout and in the separate (renamed) one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from service.errors import InvalidInputError
from service.graph.attention import Attention

Array = NDArray[np.float64]

EXACT = 1e-12
"""Relative error allowed for the forward pass: the same sums in another order."""
DERIVATIVE = 1e-10
"""Relative error allowed for the JVP, the VJP and the parameters' cotangents (issue 19's tolerance)."""

PROBES, STEPS, WIDTH, HEADS = 3, 16, 32, 4
BERT = {
    "q_proj.weight": "query.weight",
    "q_proj.bias": "query.bias",
    "k_proj.weight": "key.weight",
    "k_proj.bias": "key.bias",
    "v_proj.weight": "value.weight",
    "v_proj.bias": "value.bias",
    "out_proj.weight": "output.dense.weight",
    "out_proj.bias": "output.dense.bias",
}
"""A HuggingFace BERT's names for the projections."""


def _relative(actual: Array, expected: Array) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def _module(bias: bool = True) -> torch.nn.MultiheadAttention:
    torch.manual_seed(0)
    module = torch.nn.MultiheadAttention(WIDTH, HEADS, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():  # biases away from torch's zero initialisation, so that they count
        for name, parameter in module.named_parameters():
            if "bias" in name:
                parameter.normal_()
    return module.eval()


def _packed(module: torch.nn.MultiheadAttention) -> dict[str, Array]:
    return {name: p.detach().numpy() for name, p in module.named_parameters()}


def _separate(packed: dict[str, Array]) -> dict[str, Array]:
    """The packed parameters split into q, k, v, under BERT's names."""
    separate = {BERT[f"{p}_proj.weight"]: w for p, w in zip("qkv", np.split(packed["in_proj_weight"], 3), strict=True)}
    if "in_proj_bias" in packed:
        separate |= {BERT[f"{p}_proj.bias"]: b for p, b in zip("qkv", np.split(packed["in_proj_bias"], 3), strict=True)}
    separate[BERT["out_proj.weight"]] = packed["out_proj.weight"]
    if "out_proj.bias" in packed:
        separate[BERT["out_proj.bias"]] = packed["out_proj.bias"]
    return separate


def _mask(causal: bool) -> torch.Tensor | None:
    return torch.triu(torch.ones(STEPS, STEPS, dtype=torch.bool), diagonal=1) if causal else None


def _torch_output(module: torch.nn.MultiheadAttention, causal: bool, weights: bool = False) -> Any:
    """x ↦ the module's output; with ``weights`` by torch's explicit softmax path (forward-mode AD has no rule for
    the fused scaled_dot_product_attention kernel the other path takes)."""
    mask = _mask(causal)
    return lambda x: module(x, x, x, need_weights=weights, attn_mask=mask, is_causal=causal)[0]


def _ops(module: torch.nn.MultiheadAttention, causal: bool) -> tuple[Attention, Attention]:
    packed = _packed(module)
    return (
        Attention.from_packed(packed, num_heads=HEADS, causal=causal),
        Attention(_separate(packed), num_heads=HEADS, causal=causal, names=BERT),
    )


def _input() -> Array:
    return np.random.default_rng(1).standard_normal((PROBES, STEPS, WIDTH))


CASES = [(causal, bias) for causal in (False, True) for bias in (True, False)]


@pytest.mark.parametrize(("causal", "bias"), CASES)
def test_forward_matches_torch(causal: bool, bias: bool) -> None:
    module, x = _module(bias), _input()
    with torch.no_grad():
        expected = _torch_output(module, causal)(torch.from_numpy(x)).numpy()
    for op in _ops(module, causal):
        assert op.output_shape([(STEPS, WIDTH)]) == (STEPS, WIDTH)
        assert _relative(op.forward([x]), expected) < EXACT


def test_causal_mask_makes_step_t_independent_of_later_steps() -> None:
    """y_t depends on x_s for s ≤ t only: a tangent on the last step moves nothing before it."""
    op = _ops(_module(), causal=True)[0]
    x = _input()
    tangent = np.zeros_like(x)
    tangent[:, -1] = 1.0
    moved = op.linearise([x]).jvp([tangent])
    assert np.all(moved[:, :-1] == 0.0)
    assert np.all(np.abs(moved[:, -1]) > 0.0)


@pytest.mark.parametrize(("causal", "bias"), CASES)
def test_jvp_and_vjp_match_torch_func(causal: bool, bias: bool) -> None:
    module, x = _module(bias), _input()
    rng = np.random.default_rng(2)
    v, u = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    # with grad enabled: under no_grad, eval mode takes the fused kernel, which has no forward-mode rule
    jv = torch.func.jvp(_torch_output(module, causal, weights=True), (torch.from_numpy(x),), (torch.from_numpy(v),))[1]
    pullback = torch.func.vjp(_torch_output(module, causal), torch.from_numpy(x))[1]
    (uj,) = pullback(torch.from_numpy(u))
    for op in _ops(module, causal):
        linearised = op.linearise([x])
        assert _relative(linearised.jvp([v]), jv.detach().numpy()) < DERIVATIVE
        assert _relative(linearised.vjp(u)[0], uj.detach().numpy()) < DERIVATIVE


@pytest.mark.parametrize(("causal", "bias"), CASES)
def test_parameter_cotangents_match_autograd(causal: bool, bias: bool) -> None:
    module, x = _module(bias), _input()
    u = np.random.default_rng(3).standard_normal(x.shape)
    (_torch_output(module, causal)(torch.from_numpy(x)) * torch.from_numpy(u)).sum().backward()
    expected: dict[str, Array] = {}
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None
        expected[name] = parameter.grad.numpy()
    packed, separate = _ops(module, causal)
    grads = packed.linearise([x]).vjp_parameters(u)
    assert list(grads) == list(expected)
    for name, grad in grads.items():
        assert _relative(grad, expected[name]) < DERIVATIVE, name
    scale = float(np.sqrt(sum(np.sum(g * g) for g in expected.values())))
    split = _separate(expected)
    grads = separate.linearise([x]).vjp_parameters(u)
    assert grads.keys() == split.keys()
    for name, grad in grads.items():
        assert np.linalg.norm(grad - split[name]) < DERIVATIVE * scale, name
    if bias:  # softmax(s + c) = softmax(s): b_k adds q_t·b_k to all of row t's scores, so its cotangent is 0
        assert np.linalg.norm(grads["key.bias"]) < 1e-14 * scale
    for name in ("query.bias", "value.bias", "output.dense.bias") if bias else ():
        assert _relative(grads[name], split[name]) < DERIVATIVE, name


def test_parameters_are_reported_in_the_layout_given() -> None:
    packed_parameters = _packed(_module())
    packed, separate = _ops(_module(), causal=False)
    assert packed.parameters.keys() == packed_parameters.keys()
    for name, array in packed.parameters.items():
        assert np.array_equal(array, packed_parameters[name])
    assert separate.parameters.keys() == set(BERT.values())
    assert np.array_equal(separate.parameters["key.weight"], np.split(packed_parameters["in_proj_weight"], 3)[1])


def test_no_global_bound() -> None:
    op = _ops(_module(), causal=False)[0]
    assert op.lipschitz() is None
    assert op.lipschitz_note is not None
    assert "not Lipschitz" in op.lipschitz_note


def test_jacobian_norm_grows_like_the_square_of_the_input() -> None:
    """Why there is no bound: one head, no biases, x = c·[x₁; −x₁] with x₁ᵀ·A·x₁ = 0 (A = W_qᵀW_k) keeps every
    score 0, P uniform, and dP·V ∝ c²: the dense Jacobian's norm (torch.func.jacrev) grows ~100× from c = 10 to 100."""
    torch.manual_seed(5)
    module = torch.nn.MultiheadAttention(4, 1, bias=False, batch_first=True, dtype=torch.float64).eval()
    parameters = _packed(module)
    w_q, w_k, _ = np.split(parameters["in_proj_weight"], 3)
    eigenvalues, eigenvectors = np.linalg.eigh((w_q.T @ w_k + w_k.T @ w_q) / 2)
    assert eigenvalues[0] < 0 < eigenvalues[-1]
    x1 = np.sqrt(eigenvalues[-1]) * eigenvectors[:, 0] + np.sqrt(-eigenvalues[0]) * eigenvectors[:, -1]
    assert abs(x1 @ w_q.T @ w_k @ x1) < 1e-12
    op = Attention.from_packed(parameters, num_heads=1)
    norms = []
    for c in (10.0, 100.0):
        x = c * np.stack([x1, -x1])
        jacobian = torch.func.jacrev(lambda s: module(s[None], s[None], s[None])[0][0])(torch.from_numpy(x))
        dense = jacobian.detach().numpy().reshape(8, 8)
        ours = np.stack([op.linearise([x[None]]).jvp([e.reshape(1, 2, 4)])[0].ravel() for e in np.eye(8)], axis=1)
        assert _relative(ours, dense) < DERIVATIVE
        norms.append(float(np.linalg.norm(dense, 2)))
    assert norms[1] > 50 * norms[0]
    assert op.lipschitz() is None


def test_bad_parameters_are_refused_with_their_name() -> None:
    packed = _packed(_module())
    separate = _separate(packed)
    cases: list[tuple[Any, tuple[str | int, ...]]] = [
        (lambda: Attention.from_packed(packed, num_heads=5, location=("n",)), ("n",)),
        (lambda: Attention.from_packed(packed, num_heads=0, location=("n",)), ("n",)),
        (lambda: Attention.from_packed({**packed, "bias_k": packed["out_proj.bias"]}, num_heads=4), ("bias_k",)),
        (lambda: Attention.from_packed({**packed, "in_proj_bias": np.zeros(95)}, num_heads=4), ("in_proj_bias",)),
        (
            lambda: Attention.from_packed({**packed, "in_proj_weight": np.zeros((96, 8))}, num_heads=4),
            ("in_proj_weight",),
        ),
        (
            lambda: Attention.from_packed({k: v for k, v in packed.items() if k != "in_proj_weight"}, num_heads=4),
            ("in_proj_weight",),
        ),
        (
            lambda: Attention.from_packed({**packed, "out_proj.bias": np.full(32, np.inf)}, num_heads=4),
            ("out_proj.bias",),
        ),
        (
            lambda: Attention({**separate, "value.weight": np.zeros((32, 31))}, num_heads=4, names=BERT),
            ("value.weight",),
        ),
        (
            lambda: Attention({k: v for k, v in separate.items() if k != "key.weight"}, num_heads=4, names=BERT),
            ("key.weight",),
        ),
        (lambda: Attention(separate, num_heads=4), ("query.weight",)),
    ]
    for build, location in cases:
        with pytest.raises(InvalidInputError) as error:
            build()
        assert error.value.location == location


def test_bad_inputs_are_refused() -> None:
    op = _ops(_module(), causal=False)[0]
    for shapes in ([(16, 31)], [(32,)], [(0, 32)], [(16, 32), (16, 32)]):
        with pytest.raises(InvalidInputError):
            op.output_shape(shapes)
