"""The full report of a 50-layer tanh network of width 1024 with a 10-wide output layer (xavier_normal init,
4 probes), against a naive numpy baseline: dense SVD for every norm, every probe handled one at a time.

    python -m bench.analysis [--depth 50] [--width 1024] [--probes 4] [--scheme xavier_normal]
    python -m bench.analysis --cores     (BLAS threads against the layers spread over the cores)

``--scheme orthogonal`` is the hard case: each diag(h')·W then has singular values |h'| exactly, packed densely
near the top, where Lanczos converges slowly and the engine falls back to dense SVD.
"""

from __future__ import annotations

import argparse
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from api.compute import available_cores
from bench._timing import best_of, table
from service.activations import make_activation
from service.analysis import Analysis, Options, analyse
from service.network import InitRecipe, Network, build_network
from service.probes import ProbeSpec, make_probes


def naive(network: Network, x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """The report's norms the textbook way: per probe, dense Jacobians and dense SVDs."""
    layers = network.layers
    weight_norms = [float(np.linalg.norm(layer.weight.dense(), 2)) for layer in layers]
    jacobian = [0.0] * len(layers)
    backward = [-math.inf] * len(layers)
    for b in range(x.shape[0]):
        a, derivatives = x[b], []
        for layer in layers:
            z = layer.weight.dense() @ a + (layer.bias if layer.bias is not None else 0.0)
            derivatives.append(layer.activation.derivative(z))
            a = layer.activation.value(z)
        product = np.eye(layers[-1].weight.shape[0])
        for j in range(len(layers) - 1, -1, -1):
            local = derivatives[j][:, None] * layers[j].weight.dense()
            jacobian[j] = max(jacobian[j], float(np.linalg.norm(local, 2)))
            if j > 0:
                product = product @ local
                backward[j - 1] = max(backward[j - 1], math.log10(float(np.linalg.norm(product, 2))))
    return {"weight_norm": weight_norms, "jacobian_norm": jacobian, "backward_norm_log10": backward[:-1]}


def ours(report: Analysis) -> dict[str, list[float]]:
    return {
        "weight_norm": [layer.weight_norm for layer in report.layers],
        "jacobian_norm": [float(layer.jacobian_norm or 0.0) for layer in report.layers],
        "backward_norm_log10": [float(layer.backward_norm_log10 or 0.0) for layer in report.layers][:-1],
    }


def _time_ours(depth: int, width: int, output: int, probes: int, scheme: str) -> float:
    widths = (width,) * depth + (output,)
    network = build_network(InitRecipe(widths=widths, scheme=scheme, activation=make_activation("tanh")))
    x, y = make_probes(ProbeSpec(count=probes), widths[0], widths[-1])
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(available_cores()) as pool:  # as the server runs it
        return best_of(2, lambda: analyse(network, x, y, Options(rtol=1e-6), pool))[0]


def scaling(scheme: str) -> None:
    """Double one size at a time from depth 25, width 512, output 10, 4 probes; the ratio is the growth."""
    base = {"depth": 25, "width": 512, "output": 10, "probes": 4}
    t0 = _time_ours(**base, scheme=scheme)
    rows: list[list[object]] = [["(base)", str(base), t0, 1.0]]
    for key, doubled in (("depth", 50), ("width", 1024), ("output", 20), ("probes", 8)):
        t = _time_ours(**{**base, key: doubled}, scheme=scheme)
        rows.append([f"{key} ×2", f"{key} = {doubled}", t, t / t0])
    print(f"cost of one analysis, tanh, {scheme}, rtol 1e-6: each size doubled in turn")
    print(table(["change", "size", "ours s", "× base"], rows))


def cores(depth: int, width: int, output: int, probes: int, scheme: str) -> None:
    """One analysis in each configuration a server could run it in on this machine's cores: BLAS threads over all
    the cores, one BLAS thread, and one BLAS thread with the layers' norms spread over a pool of a thread per core
    (as the server runs it)."""
    widths = (width,) * depth + (output,)
    network = build_network(InitRecipe(widths=widths, scheme=scheme, activation=make_activation("tanh")))
    x, y = make_probes(ProbeSpec(count=probes), widths[0], widths[-1])
    n = available_cores()
    rows: list[list[object]] = []
    with threadpool_limits(n, user_api="blas"):
        t_blas = best_of(2, lambda: analyse(network, x, y, Options(rtol=1e-6)))[0]
    with threadpool_limits(1, user_api="blas"):
        t_one = best_of(2, lambda: analyse(network, x, y, Options(rtol=1e-6)))[0]
        with ThreadPoolExecutor(n) as pool:
            t_pool = best_of(2, lambda: analyse(network, x, y, Options(rtol=1e-6), pool))[0]
    rows.append([f"BLAS on {n} threads", t_blas, 1.0])
    rows.append(["BLAS on 1 thread", t_one, t_blas / t_one])
    rows.append([f"1 BLAS thread, layers over {n} threads", t_pool, t_blas / t_pool])
    print(f"one analysis on {n} cores: tanh, {scheme}, widths {width}×{depth} → {output}, {probes} probes, rtol 1e-6")
    print(table(["configuration", "ours s", "speed-up over BLAS threads"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--output", type=int, default=10)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--scheme", default="xavier_normal", help="init scheme (orthogonal: the hard case)")
    parser.add_argument("--scaling", action="store_true", help="time ours alone at sizes that show the cost's growth")
    parser.add_argument("--cores", action="store_true", help="time ours by BLAS threads against layers over cores")
    args = parser.parse_args()
    if args.scaling:
        scaling(args.scheme)
        return
    if args.cores:
        cores(args.depth, args.width, args.output, args.probes, args.scheme)
        return
    widths = (args.width,) * args.depth + (args.output,)
    recipe = InitRecipe(widths=widths, scheme=args.scheme, activation=make_activation("tanh"), gain=1.0)
    network = build_network(recipe)
    x, y = make_probes(ProbeSpec(count=args.probes), widths[0], widths[-1])
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(available_cores()) as pool:  # as the server runs it
        t_ours, report = best_of(1, lambda: analyse(network, x, y, Options(rtol=1e-6), pool))
    t_naive, reference = best_of(1, lambda: naive(network, x, y))
    mine = ours(report)
    errors = {
        key: max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(mine[key], reference[key], strict=True))
        for key in reference
    }
    print(f"analysis: tanh, widths {args.width}×{args.depth} → {args.output}, {args.probes} probes, rtol 1e-6")
    print(f"ours as the server runs it (1 BLAS thread, layers over {available_cores()} threads); naive numpy's default")
    print(table(["ours s", "naive s", "speed-up"], [[t_ours, t_naive, t_naive / t_ours]]))
    print("largest relative difference: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    print(f"matvecs {report.methods.matvecs}")


if __name__ == "__main__":
    main()
