"""Fuzzed and hostile inputs: every answer is a 200 or a 4xx in OpenAI's error envelope, never a
5xx or a hang, and the server still serves normally afterwards."""

from __future__ import annotations

import pytest

from benchmarks.reliability import fuzz
from benchmarks.reliability.harness import LiveServer


def test_hostile_requests(fuzz_server: LiveServer):
    report = fuzz.run_hostile(fuzz_server)
    assert report.failures == []
    assert report.cases == len(fuzz.HOSTILE_CASES) + 1
    assert report.server_errors == 0 and report.hangs == 0


def test_openapi_fuzz_of_every_operation(fuzz_server: LiveServer, fuzz_sizes: fuzz.FuzzSizes):
    report = fuzz.fuzz_openapi(fuzz_server, fuzz_sizes.openapi_examples)
    assert report.failures == []
    assert report.server_errors == 0
    assert report.by_status[200] > 0 and report.by_status[400] > 0


def test_extreme_sampling_values(fuzz_server: LiveServer, fuzz_sizes: fuzz.FuzzSizes):
    report = fuzz.fuzz_sampling(fuzz_server, fuzz_sizes.sampling_examples)
    assert report.failures == []
    assert report.by_status[200] > 0  # some reached the engine


@pytest.mark.parametrize(("status", "content_type", "text", "problem"), [
    (200, "application/json", "{}", None),
    (200, "text/event-stream", 'data: {"choices": []}\n\ndata: [DONE]\n\n', None),
    (200, "text/event-stream", 'data: {"choices": []}\n\n', "stream without [DONE]"),
    (200, "text/event-stream",
     'data: {"error": {"message": "x", "type": "t", "param": null, "code": 500}}\n\n'
     "data: [DONE]\n\n", "error event"),
    (400, "application/json",
     '{"error": {"message": "m", "type": "BadRequestError", "param": null, "code": 400}}', None),
    (400, "application/json", '{"detail": "FastAPI\'s own format"}', "outside the error envelope"),
    (413, "application/json",
     '{"error": {"message": "m", "type": "t", "param": null, "code": 400}}', "outside"),
    (500, "application/json", "{}", "HTTP 500"),
])
def test_the_rule_each_response_is_held_to(status, content_type, text, problem):
    found = fuzz.response_problem(status, content_type, text)
    assert (found is None) if problem is None else (problem in found)
