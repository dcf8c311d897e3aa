"""Property-based fuzzing of the REST API from its own OpenAPI schema (schemathesis).

Schemathesis reads ``/api/openapi.json`` and sends schema-valid and schema-breaking
requests to every operation of the real app (in-process, over ASGI: nothing leaves
the process). Every response must be a documented status with a body matching the
schema, and never a 5xx. Hypothesis then sends bodies of the right shape holding any
JSON value anywhere (lone surrogates and control characters included), which the
schema-driven cases never draw. The budget is bounded: ``QA_FUZZ_EXAMPLES`` examples
per operation and mode (default 50; twice that per route for the raw bodies) and
``QA_FUZZ_DEADLINE`` seconds per example (default 30).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from qa.serve.server import create_app  # noqa: E402
from tests.app_fixtures import build_engine  # noqa: E402

EXAMPLES = int(os.environ.get("QA_FUZZ_EXAMPLES", "50"))
DEADLINE = float(os.environ.get("QA_FUZZ_DEADLINE", "30"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
#: Every operation of the schema; a new route must be added here (a test checks it).
OPERATIONS = [
    ("POST", "/api/ask"),
    ("POST", "/api/search"),
    ("POST", "/api/feedback"),
    ("GET", "/api/info"),
    ("GET", "/api/health"),
    ("POST", "/api/reload"),
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    engine = build_engine(tmp_path_factory.mktemp("fuzz"), fast=True)
    # No rate limit: the fuzzer sends hundreds of requests from one client.
    app = create_app(engine, engine.settings.replace(rate_limit_per_minute=0))
    yield schemathesis.openapi.from_asgi("/api/openapi.json", app)


def test_every_operation_is_fuzzed(api_schema: Any) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


# Schema-breaking requests need something to break: a parameter or a body.
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or (method == "POST" and path != "/api/reload")
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_api_never_fails_and_matches_its_schema(
    api_schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=timedelta(seconds=DEADLINE),
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    fuzz()


# -- hostile JSON beyond the schema ---------------------------------------------------------
# Schemathesis draws strings without lone surrogates and objects without the keys the
# server reads; these bodies keep the request's shape but put any JSON value anywhere.

# Any code point, lone surrogates and control characters included, hostile ones often.
_HOSTILE = st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b", "\u202e", "\u200b", "\ufeff", "<", "\n"])
# (st.text never yields surrogates, so strings are joined from single characters.)
_TEXT = st.lists(st.characters(exclude_categories=()) | _HOSTILE, max_size=40).map("".join)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | _TEXT
_JSON = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(_TEXT, c, max_size=4),
                     max_leaves=12)  # fmt: skip
_ANY = _JSON | _TEXT
_ANSWER = st.dictionaries(st.sampled_from(["text", "found", "score", "citations", "question"]) | _TEXT,
                          _ANY | st.lists(st.dictionaries(
                              st.sampled_from(["doc_id", "chunk_id", "start", "end"]), _ANY)),
                          max_size=5)  # fmt: skip
_BODIES = {
    "/api/ask": st.fixed_dictionaries(
        {"question": _TEXT | _ANY},
        optional={"history": st.lists(_ANY | st.fixed_dictionaries({"role": _ANY, "content": _ANY}))},
    ),
    "/api/search": st.fixed_dictionaries({"question": _TEXT | _ANY}, optional={"k": _ANY}),
    "/api/feedback": st.fixed_dictionaries(
        {"question": _TEXT | _ANY, "rating": st.sampled_from(["helpful", "not_helpful"]) | _ANY},
        optional={"answer": _ANSWER | _ANY, "comment": _ANY},
    ),
}


@pytest.fixture(scope="module")
def client(api_schema: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(api_schema.app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", list(_BODIES))
def test_any_json_in_the_right_shape_gets_a_json_answer_never_a_5xx(client: Any, path: str) -> None:
    import json

    @given(body=_BODIES[path])
    @settings(max_examples=EXAMPLES * 2, deadline=timedelta(seconds=DEADLINE),
              suppress_health_check=list(HealthCheck), database=None)  # fmt: skip
    def fuzz(body: dict[str, Any]) -> None:
        r = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
        assert r.status_code < 500, (body, r.status_code, r.text)
        data = r.json()
        assert r.status_code == 200 or (data["error"] and data["detail"]), data

    fuzz()
