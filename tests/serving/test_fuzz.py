"""Schemathesis drives every operation of the OpenAPI schema with generated inputs, valid
(positive mode) and invalid (negative mode), against the real server of tests/serving:
no input may make it answer 5xx, and every error is our JSON error shape.

Bounded and repeatable: a fixed number of examples per operation and mode, derandomized.
(Schemathesis' own pytest integration does not run under pytest 9, so the operations
are looped here, each through Hypothesis with the strategy schemathesis builds for it.)
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

# Per operation and mode; VISTAS_FUZZ_EXAMPLES=500 for a deeper run by hand.
EXAMPLES = int(os.environ.get("VISTAS_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def check_answer(case) -> None:
    response = case.call(timeout=30)
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:500]}\n{case.as_curl_command()}"
    if response.status_code >= 400:
        ctype = response.headers.get("content-type", [""])[0]
        assert ctype.startswith("application/json"), f"{where}: content-type {ctype}"
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, f"{where}: {body}"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_input_makes_a_5xx(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10  # every route of the API is in the schema
    failures = []
    for op in operations:

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=op.as_strategy(generation_mode=mode))
        def fuzz(case):
            check_answer(case)

        try:
            fuzz()
        except Unsatisfiable:
            # No invalid input exists for GET /health, or a string path parameter (every
            # path segment is a string); every operation with a body must be fuzzed.
            if mode == GenerationMode.POSITIVE or op.method.lower() == "post":
                failures.append(f"{op.method.upper()} {op.path}: no {mode.value} inputs generated")
        except AssertionError as e:  # collect all operations' findings, then fail once
            failures.append(f"{op.method.upper()} {op.path}: {e}")
    assert not failures, "\n\n".join(failures)
