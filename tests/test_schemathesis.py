"""Schemathesis against the live OpenAPI document of `python -m api`: every operation, a bounded number of examples.

Each generated request (the document's own examples, requests valid by the schema, and invalid ones) must be
answered without a 5xx, with a status code the operation documents, a content type it documents for that status,
a body its schema accepts and the headers it documents. Schemathesis builds its "examples" from the examples of
the parts as well as of the whole, so they need not be valid requests.

The server runs with JACSPEC_MAX_FLOPS = 1e8, so a generated network too large to analyse in a tenth of a
second gets the documented 413 instead of minutes of work; the examples are derandomized, so a failure comes back
on every run.

The document is read from the running server at test time, so the tests drive schemathesis's strategies with
Hypothesis directly (``APIOperation.as_strategy``); its pytest loader for schemas known only at run time
(``schemathesis.pytest.from_fixture``) sets a private attribute that pytest 9.2 no longer has.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, CheckFunction, load_all_checks
from schemathesis.core.result import Ok

from tests.helpers import running_server

MAX_EXAMPLES = 60
"""Per operation, media type and mode (about 400 requests in all): the module takes about 20 s on two cores."""

CONFORMANCE = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)

OPERATIONS = [
    ("POST /v1/analyses", "application/json"),
    ("POST /v1/analyses", "multipart/form-data"),
    ("POST /v1/bounds", "application/json"),
    ("GET /v1/activations", None),
    ("GET /v1/init-schemes", None),
    ("POST /v1/jobs", "application/json"),
    ("GET /v1/jobs", None),
    ("GET /v1/jobs/{id}", None),
    ("GET /v1/jobs/{id}/report", None),
    ("GET /v1/jobs/{id}/events", None),
    ("DELETE /v1/jobs/{id}", None),
    ("GET /healthz", None),
    ("GET /readyz", None),
    ("GET /metrics", None),
]
Mode = Literal["examples", "valid", "invalid"]
CASES = [
    pytest.param(label, media, mode, id=" ".join(filter(None, (label, media, mode))))
    for label, media in OPERATIONS
    for mode in ("examples", "valid", "invalid")
    if media is not None or mode == "valid"
]
"""The operations without a body have nothing invalid to send, nor examples: one run each."""


def checks() -> list[CheckFunction]:
    """The checks that every response must pass."""
    load_all_checks()
    found = [check for check in map(CHECKS.get_one, CONFORMANCE) if not isinstance(check, type)]
    assert len(found) == len(CONFORMANCE)
    return found


@pytest.fixture(scope="module")
def fuzzed_server() -> Iterator[str]:
    with running_server(JACSPEC_MAX_FLOPS="1e8") as url:
        yield url


@pytest.fixture(scope="module")
def live_schema(fuzzed_server: str) -> schemathesis.BaseSchema:
    """The OpenAPI document the server publishes, read over HTTP; requests go to the same server."""
    return schemathesis.openapi.from_url(f"{fuzzed_server}/openapi.json", timeout=30)


def test_every_operation_is_fuzzed(live_schema: schemathesis.BaseSchema) -> None:
    """The table below covers every operation the live document lists (the docs pages are not in it)."""
    results = list(live_schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), "the live document has an invalid operation"
    labels = {result.ok().label for result in results if isinstance(result, Ok)}
    assert labels == {label for label, _ in OPERATIONS}


@pytest.mark.parametrize(("label", "media_type", "mode"), CASES)
def test_every_operation_answers_as_documented(
    live_schema: schemathesis.BaseSchema, label: str, media_type: str | None, mode: Mode
) -> None:
    operation = live_schema.find_operation_by_label(label)
    assert operation is not None
    if mode == "examples":
        examples = operation.get_strategies_from_examples(media_type=media_type)
        assert examples, f"{label} documents no example for {media_type}"
        strategy = st.one_of(examples)
    else:
        generation = GenerationMode.POSITIVE if mode == "valid" else GenerationMode.NEGATIVE
        strategy = operation.as_strategy(generation_mode=generation, media_type=media_type)

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answered_as_documented(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=checks(), timeout=30)

    answered_as_documented()
