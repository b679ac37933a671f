"""One 2048×2048 float32 weight sent over HTTP to a running server as nested JSON, as `b64` JSON and as a
.safetensors upload, against the same nested JSON posted to a FastAPI endpoint declared the default way
(`list[list[float]]` body), each on its own uvicorn.

Our time to ingest is the request's wall time less the server's own `compute` (the analysis itself, the same for
every encoding); it keeps parse and decode and the transport. The baseline's is its wall time.

    python -m bench.ingest [--n 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import numpy as np
from safetensors.numpy import save

from bench._servers import serve
from bench._timing import table
from jacspec.models import Tensor

OPTIONS = {"inputs": {"count": 1}, "options": {"rtol": 1e-3}}


def _ingest_seconds(send: Callable[[], httpx.Response]) -> float:
    """The request's wall time less the server's compute time."""
    started = time.perf_counter()
    response = send()
    wall = time.perf_counter() - started
    response.raise_for_status()
    return wall - float(response.json()["meta"]["timings_ms"]["compute"]) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    weight = np.random.default_rng(0).standard_normal((args.n, args.n)).astype(np.float32) / np.sqrt(args.n)
    nested = weight.tolist()
    bodies: dict[str, Any] = {
        "nested JSON": json.dumps({"network": {"layers": [{"weight": nested}]}, **OPTIONS}).encode(),
        "b64 JSON": json.dumps(
            {
                "network": {"layers": [{"weight": Tensor.from_numpy(weight, b64=True).model_dump(exclude_none=True)}]},
                **OPTIONS,
            }
        ).encode(),
    }
    upload = save({"0.weight": weight})
    request_part = json.dumps(OPTIONS)
    rows = []
    with serve("api.main:app") as (url, _), httpx.Client(timeout=600.0) as client:
        json_headers = {"content-type": "application/json"}
        sends: dict[str, Callable[[], httpx.Response]] = {
            name: partial(client.post, url + "/v1/analyses", content=body, headers=json_headers)
            for name, body in bodies.items()
        }
        sends["safetensors"] = lambda: client.post(
            url + "/v1/analyses",
            files={
                "weights": ("w.safetensors", upload, "application/octet-stream"),
                "request": (None, request_part, "application/json"),
            },
        )
        ours = {name: min(_ingest_seconds(send) for _ in range(args.repeats)) for name, send in sends.items()}
    with serve("bench._bare:app") as (url, _), httpx.Client(timeout=600.0) as client:
        body = json.dumps({"weight": nested}).encode()
        baseline = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            client.post(url + "/weights", content=body, headers={"content-type": "application/json"}).raise_for_status()
            baseline = min(baseline, time.perf_counter() - started)
    rows.append(["default FastAPI (nested JSON)", baseline, 1.0, ""])
    for name, seconds in ours.items():
        rows.append([f"jacspec {name}", seconds, baseline / seconds, ours["nested JSON"] / seconds])
    print(f"ingesting one {args.n}×{args.n} float32 weight (best of {args.repeats}), seconds")
    print(table(["route", "ingest s", "× default", "× our JSON"], rows))


if __name__ == "__main__":
    main()
