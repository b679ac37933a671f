"""One 2048×2048 float32 weight sent over HTTP to a running server as nested JSON, as `b64` JSON and as a
.safetensors upload, against the same nested JSON posted to a FastAPI endpoint declared the default way
(`list[list[float]]` body), each on its own uvicorn.

Our time to ingest is the request's wall time less the server's own `compute` (the analysis itself, the same for
every encoding); it keeps parse and decode and the transport. The baseline's is its wall time. The floor is the
wall time of the safetensors body posted to a bare endpoint that only reads it: what no decoding can go below.
Every server inherits this process's environment (glibc's ``MALLOC_*_`` variables among it). Bodies are sent
by the stdlib's ``http.client`` in one ``sendall``, so that the time is the server's, not the client's (httpx's
sync client sends loopback bodies slower than uvicorn receives them: docs/performance.md).

    python -m bench.ingest [--n 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from safetensors.numpy import save

from bench._servers import JACSPEC, serve
from bench._timing import table
from jacspec.models import Tensor

OPTIONS = {"inputs": {"count": 1}, "options": {"rtol": 1e-3}}
JSON = {"content-type": "application/json"}


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """POST ``body``; the wall time in seconds and the JSON answer."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)
    try:
        started = time.perf_counter()
        connection.request("POST", parts.path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        wall = time.perf_counter() - started
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"{url}: {response.status} {answer[:300]!r}")
    return wall, json.loads(answer)


def _ingest_seconds(url: str, body: bytes, headers: dict[str, str]) -> float:
    """The request's wall time less the server's compute time."""
    wall, answer = _post(url, body, headers)
    return wall - float(answer["meta"]["timings_ms"]["compute"]) / 1e3


def _multipart(upload: bytes, request_part: str) -> tuple[bytes, dict[str, str]]:
    """The multipart body and its headers, as httpx (and so the SDK) encodes them."""
    files: dict[str, tuple[str | None, bytes | str, str]] = {
        "weights": ("w.safetensors", upload, "application/octet-stream"),
        "request": (None, request_part, "application/json"),
    }
    request = httpx.Request("POST", "http://unused/", files=files)
    return request.read(), {"content-type": request.headers["content-type"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    weight = (np.random.default_rng(0).standard_normal((args.n, args.n)) / np.sqrt(args.n)).astype(np.float32)
    nested = weight.tolist()
    b64 = Tensor.from_numpy(weight, b64=True).model_dump(exclude_none=True)
    bodies: dict[str, tuple[bytes, dict[str, str]]] = {
        "nested JSON": (json.dumps({"network": {"layers": [{"weight": nested}]}, **OPTIONS}).encode(), JSON),
        "b64 JSON": (json.dumps({"network": {"layers": [{"weight": b64}]}, **OPTIONS}).encode(), JSON),
        "safetensors": _multipart(save({"0.weight": weight}), json.dumps(OPTIONS)),
    }
    assert len(bodies["safetensors"][0]) < weight.nbytes + 4096, "the upload must hold float32, 4 bytes a weight"
    with serve(JACSPEC, factory=True) as (url, _):
        ours = {
            name: min(_ingest_seconds(url + "/v1/analyses", body, headers) for _ in range(args.repeats))
            for name, (body, headers) in bodies.items()
        }
    with serve("bench._bare:app") as (url, _):
        body = json.dumps({"weight": nested}).encode()
        baseline = min(_post(url + "/weights", body, JSON)[0] for _ in range(args.repeats))
        upload, headers = bodies["safetensors"]
        floor = min(_post(url + "/receive", upload, headers)[0] for _ in range(args.repeats))
    rows: list[list[Any]] = [["default FastAPI (nested JSON)", baseline, 1.0, ""]]
    for name, seconds in ours.items():
        rows.append([f"jacspec {name}", seconds, baseline / seconds, ours["nested JSON"] / seconds])
    rows.append(["safetensors body received, no more (floor)", floor, baseline / floor, ours["nested JSON"] / floor])
    print(f"ingesting one {args.n}×{args.n} float32 weight (best of {args.repeats}), seconds")
    print(table(["route", "ingest s", "× default", "× our JSON"], rows))


if __name__ == "__main__":
    main()
