"""GET /metrics: Prometheus counters move with the requests, labelled by route template, and the compute slots'
gauges follow a held slot and a waiting request."""

from __future__ import annotations

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.compute import available_cores
from jacspec import __version__
from tests.api.test_overload import FACTORS, PATIENCE_S, slot_held
from tests.helpers import served

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ANALYSIS = {"network": {"activation": "tanh", "init": {"widths": [8, 8, 4], "scheme": "orthogonal", "gain": 0.5}}}


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_counters_move_with_requests(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get("/healthz")).status_code == 200
    assert (await client.post("/v1/analyses", json=ANALYSIS)).status_code == 200
    assert (await client.post("/v1/analyses", json={"network": {}})).status_code == 422
    for path in ("/nope/1", "/nope/2"):
        assert (await client.get(path)).status_code == 404
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "jacspec_http_requests_total"
    assert moved(requests, method="GET", route="/healthz", status="200") == 3
    assert moved(requests, method="POST", route="/v1/analyses", status="200") == 1
    assert moved(requests, method="POST", route="/v1/analyses", status="422") == 1
    assert moved(requests, method="GET", route="unmatched", status="404") == 2
    assert moved(requests, method="GET", route="/metrics", status="200") == 1  # the first scrape
    assert not [labels for name, labels in after if ("route", "/nope/1") in labels]
    latency = "jacspec_http_request_duration_seconds"
    assert moved(f"{latency}_count", method="POST", route="/v1/analyses") == 2
    assert moved(f"{latency}_sum", method="POST", route="/v1/analyses") > 0
    assert moved(f"{latency}_bucket", method="GET", route="/healthz", le="+Inf") == 3
    # The analysis's work: one stable network of two layers, 8·8 + 4·8 weights, two dense weight norms.
    assert moved("jacspec_analyses_total", verdict="stable") == 1
    assert moved("jacspec_analyses_total", verdict="exploding") == 0
    assert moved("jacspec_analysis_layers_total") == 2
    assert moved("jacspec_analysis_weights_total") == 96
    assert moved("jacspec_weight_norms_total", method="dense") == 2
    # Even so small an analysis is computed in a worker process.
    assert moved("jacspec_compute_seconds_count", place="worker") == 1
    assert moved("jacspec_compute_wait_seconds_count") == 1
    assert value(after, "jacspec_build_info", version=__version__) == 1
    assert value(after, "jacspec_compute_workers") == available_cores()
    assert value(after, "jacspec_http_requests_in_progress") == 1  # the scrape itself


async def test_unknown_methods_share_one_label(client: httpx.AsyncClient) -> None:
    assert (await client.request("BREW", "/healthz")).status_code == 405
    samples = await scrape(client)
    assert value(samples, "jacspec_http_requests_total", method="other", route="/healthz", status="405") == 1
    assert not [labels for _, labels in samples if ("method", "BREW") in labels]


async def post_bounds(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/bounds", json=FACTORS)).status_code == 200


async def test_slot_gauges_follow_a_held_slot_and_a_waiting_request() -> None:
    async with served(compute_workers=1, job_runners=0, queue_timeout=600, queue_size=1) as (app, client):
        with anyio.fail_after(PATIENCE_S):
            idle = await scrape(client)
            assert value(idle, "jacspec_compute_workers") == 1
            assert value(idle, "jacspec_compute_workers_busy") == 0
            async with anyio.create_task_group() as group, slot_held(app.state.compute):
                busy = await scrape(client)
                assert value(busy, "jacspec_compute_workers_busy") == 1
                assert value(busy, "jacspec_compute_waiting") == 0
                group.start_soon(post_bounds, client)  # waits for the held slot
                while app.state.compute.limiter.statistics().tasks_waiting < 1:
                    await anyio.sleep(0.01)
                queued = await scrape(client)
                assert value(queued, "jacspec_compute_waiting") == 1
                refused = await client.post("/v1/bounds", json=FACTORS)  # the queue is full
                assert refused.status_code == 503
            done = await scrape(client)
    assert value(done, "jacspec_compute_workers_busy") == 0
    assert value(done, "jacspec_compute_waiting") == 0
    assert value(done, "jacspec_compute_seconds_count", place="worker") == 2  # the held task, the bound that waited
    assert value(done, "jacspec_compute_wait_seconds_count") == 2
    assert value(done, "jacspec_http_requests_total", method="POST", route="/v1/bounds", status="503") == 1


async def test_openmetrics_when_asked() -> None:
    async with served() as (_, client):
        response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_metrics_need_no_api_key() -> None:
    async with served(api_keys=["k-1"]) as (_, client):
        assert (await client.get("/v1/activations")).status_code == 401
        assert (await client.get("/metrics")).status_code == 200


async def test_a_larger_analysis_is_counted_in_a_worker(client: httpx.AsyncClient) -> None:
    body = {"network": {"activation": "relu", "init": {"widths": [256, 256, 256, 256], "scheme": "he_normal"}}}
    assert (await client.post("/v1/analyses", json=body)).status_code == 200
    samples = await scrape(client)
    assert value(samples, "jacspec_compute_seconds_count", place="worker") == 1
    assert value(samples, "jacspec_compute_wait_seconds_count") == 1
    assert value(samples, "jacspec_analysis_layers_total") == 3
    assert value(samples, "jacspec_analysis_weights_total") == 3 * 256 * 256
    assert value(samples, "jacspec_compute_workers_busy") == 0
