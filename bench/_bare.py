"""The baselines of the HTTP benchmarks: FastAPI endpoints declared the default way."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel

app = FastAPI()


class Weights(BaseModel):
    weight: list[list[float]]


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/bare")
async def bare(body: dict[str, Any]) -> dict[str, bool]:
    """Parses the JSON body the default way and answers a constant."""
    return {"ok": True}


@app.post("/weights")
async def weights(body: Weights) -> dict[str, int]:
    """One matrix as list[list[float]], parsed and validated the default way."""
    return {"rows": len(body.weight)}


@app.post("/receive")
async def receive(request: Request) -> dict[str, int]:
    """Reads the body chunk by chunk, as jacspec's routes do, and answers its length: the floor of any upload."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"bytes": size}
