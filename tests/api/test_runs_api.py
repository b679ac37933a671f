"""Runs over HTTP on SQLite and on a real PostgreSQL server: points kept by POST /v1/analyses with a run and a
step, the run's answer against the stored reports, the comparison, a step replaced, a step assigned, events,
another key's run, pagination, deletion, and the 4xx of bad names, steps and cursors."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import numpy as np
import pytest
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy

from api import compute
from tests.helpers import served

KEY_A, KEY_B = "key-a-0123456789", "key-b-0123456789"
A, B = {"X-API-Key": KEY_A}, {"X-API-Key": KEY_B}
METRICS = ("weight_norm", "jacobian_norm", "backward_norm_log10", "backward_bound_log10", "gradient_norm_log10")


def body(gain: float, **extra: object) -> dict[str, Any]:
    network = {"activation": "tanh", "init": {"widths": [6, 6, 6, 3], "scheme": "orthogonal", "gain": gain}}
    return {"network": network, "inputs": {"count": 4, "seed": 1}, **extra}


async def analyse(client: httpx.AsyncClient, gain: float, headers: dict[str, str], **extra: object) -> httpx.Response:
    answer = await client.post("/v1/analyses", json=body(gain, **extra), headers=headers)
    assert answer.status_code == 200, answer.text
    return answer


@pytest.mark.anyio
async def test_points_run_compare_replace_events_and_delete(database_url: str) -> None:
    async with served(database_url=database_url, api_keys=[KEY_A, KEY_B]) as (_, client):
        reports = {}
        for step, gain in ((0, 0.5), (10, 1.0), (20, 2.0)):
            answer = await analyse(client, gain, A, run="exp-1", step=step)
            assert answer.headers["Jacspec-Run-Step"] == str(step)
            reports[step] = answer.json()
        # without a step: the last + 1
        answer = await analyse(client, 1.5, A, run="exp-1")
        assert answer.headers["Jacspec-Run-Step"] == "21"
        reports[21] = answer.json()
        # the same step again replaces it
        answer = await analyse(client, 0.8, A, run="exp-1", step=10)
        reports[10] = answer.json()

        stored = await client.get("/v1/runs/exp-1/steps/10", headers=A)
        assert stored.status_code == 200
        assert stored.content == answer.content

        run = (await client.get("/v1/runs/exp-1", headers=A)).json()
        assert run["steps"] == [0, 10, 20, 21]
        assert run["verdicts"] == [reports[s]["summary"]["verdict"] for s in run["steps"]]
        assert len(run["created_at"]) == 4
        assert [layer["index"] for layer in run["layers"]] == [1, 2, 3]
        for layer in run["layers"]:
            for metric in METRICS:
                expected = [reports[s]["layers"][layer["index"] - 1][metric] for s in run["steps"]]
                assert layer["metrics"][metric] == expected
        assert run["summary"]["input_norm_log10"] == [reports[s]["summary"]["input_norm_log10"] for s in run["steps"]]

        compared = (await client.get("/v1/runs/exp-1/compare", params={"a": 0, "b": 20}, headers=A)).json()
        assert compared["verdicts"] == {"a": reports[0]["summary"]["verdict"], "b": reports[20]["summary"]["verdict"]}
        first = compared["layers"][0]["metrics"]
        x, y = reports[0]["layers"][0], reports[20]["layers"][0]
        assert first["backward_norm_log10"]["log10_change"] == pytest.approx(
            y["backward_norm_log10"] - x["backward_norm_log10"], rel=1e-12, abs=1e-12
        )
        # orthogonal init: σ = gain exactly, so log10(2.0/0.5) = log10 4
        assert first["weight_norm"]["log10_change"] == pytest.approx(math.log10(4.0), rel=1e-9)
        missing = await client.get("/v1/runs/exp-1/compare", params={"a": 0, "b": 5}, headers=A)
        assert missing.status_code == 404

        event = {"step": 21, "kind": "diverged", "message": "NaN in 0.weight", "parameter": "0.weight"}
        created = await client.post("/v1/runs/exp-1/events", json=event, headers=A)
        assert created.status_code == 201
        assert created.json()["parameter"] == "0.weight"
        events = (await client.get("/v1/runs/exp-1", headers=A)).json()["events"]
        assert [{k: e[k] for k in event} for e in events] == [event]

        # another key sees nothing of it
        for path in ("/v1/runs/exp-1", "/v1/runs/exp-1/steps/0", "/v1/runs/exp-1/compare?a=0&b=10"):
            assert (await client.get(path, headers=B)).status_code == 404
        assert (await client.delete("/v1/runs/exp-1", headers=B)).status_code == 404
        assert (await client.get("/v1/runs", headers=B)).json() == {"runs": [], "next_cursor": None}

        listed = (await client.get("/v1/runs", headers=A)).json()
        assert listed["runs"][0]["run"] == "exp-1"
        assert listed["runs"][0]["points"] == 4
        assert (listed["runs"][0]["first_step"], listed["runs"][0]["last_step"]) == (0, 21)
        assert listed["runs"][0]["last_verdict"] == reports[21]["summary"]["verdict"]

        assert (await client.delete("/v1/runs/exp-1", headers=A)).status_code == 204
        assert (await client.get("/v1/runs/exp-1", headers=A)).status_code == 404
        assert (await client.get("/v1/runs", headers=A)).json()["runs"] == []


@pytest.mark.anyio
async def test_runs_paginate_newest_first(database_url: str) -> None:
    async with served(database_url=database_url) as (_, client):
        names = [f"r{i}" for i in range(5)]
        for name in names:
            await analyse(client, 1.0, {}, run=name, step=0)
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2} | ({} if cursor is None else {"cursor": cursor})
            page = (await client.get("/v1/runs", params=params)).json()
            pages += 1
            seen += [r["run"] for r in page["runs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == names[::-1]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "payload", "pointer"),
    [
        ("POST", "/v1/analyses", body(1.0, step=3), "/step"),
        ("POST", "/v1/analyses", body(1.0, run="-bad"), "/run"),
        ("POST", "/v1/analyses", body(1.0, run="ok", step=-1), "/step"),
        ("POST", "/v1/analyses", body(1.0, run="ok", step=2**53 + 1), "/step"),
        ("GET", "/v1/runs/bad%20name", None, "/path/run"),
        ("GET", "/v1/runs/ok/steps/-1", None, "/path/step"),
        ("GET", "/v1/runs?cursor=not-a-cursor", None, "/query/cursor"),
        ("GET", "/v1/runs?limit=0", None, "/query/limit"),
        ("GET", "/v1/runs/ok/compare?a=1", None, "/query/b"),
        ("POST", "/v1/runs/ok/events", {"step": 1, "kind": "boom", "message": "x"}, "/kind"),
    ],
)
async def test_bad_names_steps_and_cursors_name_the_field(
    method: str, path: str, payload: object, pointer: str, tmp_path: Any
) -> None:
    async with served(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}") as (_, client):
        answer = await client.request(method, path, json=payload)
    assert answer.status_code == 422, answer.text
    assert pointer in [e["pointer"] for e in answer.json()["errors"]]


@pytest.mark.anyio
async def test_a_storage_failure_keeps_the_computed_answer(tmp_path: Any) -> None:
    async with served(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}") as (app, client):
        plain = await client.post("/v1/analyses", json=body(1.0))
        app.state.engine.dispose()
        (tmp_path / "db.sqlite3").unlink()
        (tmp_path / "db.sqlite3").mkdir()  # the file is now a directory: nothing can be stored
        answer = await client.post("/v1/analyses", json=body(1.0, run="lost"))
    assert answer.status_code == 200
    assert "Jacspec-Run-Error" in answer.headers
    assert json.loads(answer.content)["layers"] == plain.json()["layers"]


@pytest.mark.anyio
async def test_a_large_body_validated_in_the_worker_keeps_its_point(tmp_path: Any) -> None:
    """A JSON body over SHARED_BYTES is validated in the worker; its run and step are read after the analysis."""
    width = 400
    weight = [[(i * 7 + j * 3) % 11 / 110.0 for j in range(width)] for i in range(width)]
    large = {"network": {"activation": "tanh", "layers": [{"weight": weight}]}, "inputs": {"count": 2}}
    content = json.dumps({**large, "run": "big", "step": 7}).encode()
    assert len(content) > compute.SHARED_BYTES
    async with served(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}") as (_, client):
        answer = await client.post("/v1/analyses", content=content, headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["Jacspec-Run-Step"] == "7"
        stored = await client.get("/v1/runs/big/steps/7")
    assert stored.content == answer.content


@pytest.mark.anyio
async def test_an_upload_and_a_survey_keep_their_points(database_url: str) -> None:
    """The multipart request part's run and step: a chain upload, then a survey (verdict `survey`, σ_max as
    weight_norm) as the next step."""
    rng = np.random.default_rng(0)
    chain = save_numpy({"0.weight": rng.standard_normal((4, 3)), "1.weight": rng.standard_normal((2, 4))})
    async with served(database_url=database_url) as (_, client):
        first = await client.post(
            "/v1/analyses",
            files={
                "weights": ("m.safetensors", chain),
                "request": (None, json.dumps({"network": {"activation": "tanh"}, "run": "up", "step": 3})),
            },
        )
        assert first.status_code == 200, first.text
        second = await client.post(
            "/v1/analyses",
            files={"weights": ("m.safetensors", chain), "request": (None, json.dumps({"survey": True, "run": "up"}))},
        )
        assert second.status_code == 200, second.text
        assert second.headers["Jacspec-Run-Step"] == "4"
        run = (await client.get("/v1/runs/up")).json()
    survey = second.json()
    assert run["steps"] == [3, 4]
    assert run["verdicts"] == [first.json()["summary"]["verdict"], "survey"]
    assert [layer["metrics"]["weight_norm"] for layer in run["layers"]] == [
        [first.json()["layers"][i]["weight_norm"], survey["weights"][i]["sigma_max"]] for i in range(2)
    ]
    # σ_max of the survey is the spectral norm: numpy's dense SVD, to the survey's float64 accuracy
    assert survey["weights"][0]["sigma_max"] == pytest.approx(
        np.linalg.svd(load_numpy(chain)["0.weight"], compute_uv=False)[0], rel=1e-12
    )
