"""Lab 4 (server): the OpenAI-compatible API, through HTTP as clients see it.

One server (`python -m minivllm.server`: the tiny random model on the provided baselines of
labs 1–3, on the CPU even where there is a GPU) serves the whole module. Each check sends a
request stored in `tests/fixtures/lab4_server.json` and compares the answer's texts, finish
reasons, usage and status codes with the reference server's; streams are read event by event
from the raw bytes and must follow the protocol (`minivllm/labs/openai_checks.py`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from minivllm.labs.compare import first_mismatch
from minivllm.labs.fixtures import load_json
from minivllm.labs.openai_checks import send
from minivllm.labs.server_harness import running_server


@pytest.fixture(scope="module")
def reference(fixtures_dir) -> dict:
    return load_json(fixtures_dir, "lab4_server.json")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("lab4") / "server.log"
    with running_server(log) as srv:
        yield srv


def _check(server, reference: dict, name: str) -> None:
    request = reference["requests"][name]
    got = send(server, request)
    want = request["expected"]
    if "choices" in want:
        assert len(got["choices"]) == len(want["choices"]), (
            f"{name}: {len(got['choices'])} choices, expected {len(want['choices'])}")
        mismatch = first_mismatch(want["choices"], got["choices"], list(want["choices"][0]),
                                  lambda i: f"{name}, choice {i}")
        assert mismatch is None, mismatch
    for key in (k for k in want if k != "choices"):
        assert got.get(key) == want[key], f"{name}: {key}: expected {want[key]!r}, " \
                                          f"got {got.get(key)!r}"


@pytest.mark.points(1)
def test_models_lists_the_served_name(server, reference):
    with server.http() as http:
        data = http.get("/v1/models").json()
    assert data.get("object") == "list"
    assert [m["id"] for m in data["data"]] == reference["models"]


@pytest.mark.parametrize("name", [
    pytest.param("completion", marks=pytest.mark.points(3)),
    pytest.param("completion_batch_n2", marks=pytest.mark.points(2)),
    pytest.param("completion_stop", marks=pytest.mark.points(2)),
    pytest.param("chat", marks=pytest.mark.points(3)),
])
def test_response(server, reference, name):
    _check(server, reference, name)


@pytest.mark.parametrize("name", [
    pytest.param("completion_stream", marks=pytest.mark.points(3)),
    pytest.param("chat_stream", marks=pytest.mark.points(4)),
    pytest.param("chat_stream_n2", marks=pytest.mark.points(2)),
])
def test_stream(server, reference, name):
    _check(server, reference, name)


@pytest.mark.points(1)
@pytest.mark.parametrize("name", [
    "error_max_tokens_zero", "error_negative_temperature", "error_prompt_too_long",
    "error_unknown_model", "error_invalid_json", "error_missing_messages",
    "error_stream_invalid", "error_no_api_key"])
def test_error(server, reference, name):
    _check(server, reference, name)


@pytest.mark.points(2)
def test_openai_client_reads_the_chat_stream(server, reference):
    request = reference["requests"]["chat_stream"]
    want = request["expected"]
    body = {k: v for k, v in request["body"].items() if k != "stream"}
    stream = server.openai().chat.completions.create(**body, stream=True)
    text, finish, usage = "", None, None
    for chunk in stream:
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
        usage = chunk.usage or usage
    assert text == want["choices"][0]["text"], f"streamed text {text!r}, expected " \
                                               f"{want['choices'][0]['text']!r}"
    assert finish == want["choices"][0]["finish_reason"]
    assert usage is not None, "no usage chunk although stream_options.include_usage was set"
    got_usage = {k: getattr(usage, k) for k in want["usage"]}
    assert got_usage == want["usage"], f"usage {got_usage}, expected {want['usage']}"


@pytest.mark.points(2)
def test_concurrent_requests_get_their_own_answers(server, reference):
    """Four clients at once (the engine batches them): each gets the answer it would get
    alone."""
    names = ["chat", "completion", "chat_stream", "completion_stop"]
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(pool.map(lambda n: _check(server, reference, n), names))
