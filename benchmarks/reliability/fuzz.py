"""Input fuzzing: whatever a client sends, the answer is a 200 or a 4xx in OpenAI's envelope.

Three sources of requests, all sent over HTTP to a live server:

* `fuzz_openapi`: schemathesis reads the server's own `/openapi.json` and, for every operation,
  generates bodies that fit the schema (positive) and bodies that break it (negative);
* `fuzz_sampling`: Hypothesis builds completion and chat requests that are valid except for
  one or two fields set to an extreme value (ints past 64 bits, NaN, infinities, long lists):
  these reach the engine, where a bad value crashes a step, not just a handler;
* `HOSTILE_CASES`: hand-written attacks (huge `n`, `max_tokens` of 10^9, thousands of stop
  strings, a 50 MB or deeply nested body, invalid UTF-8, lone surrogates, token ids out of the
  vocabulary, odd seeds, empty or odd messages, a chat template that raises, ...).

A case fails when the response is a 5xx, takes longer than `TIMEOUT_S` (a hang), is a 4xx
outside the envelope, or is a stream that carries an error event or does not end with
`[DONE]`. After each source the server must still answer a normal request and report healthy.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from benchmarks.reliability.harness import LiveServer, sse_events

TIMEOUT_S = 60
"""A request that takes longer than this counts as a hang."""

VOCAB_SIZE = 512
"""tiny-llama's vocabulary (the byte tokenizer's 259 tokens, padded)."""

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['content'] == 'raise-template-error' %}"
    "{{ raise_exception('this template refuses the conversation') }}"
    "{% elif m['content'] == 'divide-by-zero' %}{{ 1 // 0 }}{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""ChatML, except for two messages: one makes the template raise on purpose
(`raise_exception`), the other divides by zero, as a buggy template would."""


def server_args(folder: Path) -> list[str]:
    """The fuzzed server: the request logger, CORS and the test chat template are on, so that
    the fuzz runs through them too. 64 blocks hold every request the fuzz can make."""
    template = folder / "raising_template.jinja"
    template.write_text(CHAT_TEMPLATE)
    return ["--num-gpu-blocks-override", "64", "--chat-template", str(template),
            "--enable-log-requests", "--enable-log-outputs", "--max-log-len", "64",
            "--allowed-origins", "http://allowed.example"]


@dataclass(frozen=True)
class FuzzSizes:
    openapi_examples: int = 300
    """Schemathesis cases per operation and mode."""
    sampling_examples: int = 4000

    @classmethod
    def ci(cls) -> FuzzSizes:
        return cls(openapi_examples=25, sampling_examples=300)


@dataclass
class FuzzReport:
    cases: int = 0
    by_status: Counter = field(default_factory=Counter)
    server_errors: int = 0
    hangs: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "server_errors": self.server_errors, "hangs": self.hangs,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "failures": self.failures[:20]}


def response_problem(status: int, content_type: str, text: str) -> str | None:
    """Why a response breaks the rule, or None: a 200 (a stream ending in [DONE] without error
    events) or a 4xx whose body is exactly OpenAI's error envelope with `code` = the status."""
    if status >= 500:
        return f"HTTP {status}: {text[:200]}"
    if status == 200:
        if not content_type.startswith("text/event-stream"):
            return None
        events = sse_events(text.splitlines())
        errors = [e for e in events if isinstance(e, dict) and "error" in e]
        if errors:
            return f"error event in a stream: {errors[0]}"
        return None if events and events[-1] == "[DONE]" else "stream without [DONE]"
    if not 400 <= status < 500:
        return f"unexpected HTTP {status}"
    try:
        body = json.loads(text)
        error = body["error"]
        ok = (set(body) == {"error"} and set(error) == {"message", "type", "param", "code"}
              and error["code"] == status and isinstance(error["message"], str))
    except (ValueError, KeyError, TypeError):
        ok = False
    return None if ok else f"HTTP {status} outside the error envelope: {text[:200]}"


def _record(report: FuzzReport, label: str, status: int, content_type: str,
            text: str) -> None:
    report.cases += 1
    report.by_status[status] += 1
    report.server_errors += status >= 500
    if (problem := response_problem(status, content_type, text)) is not None:
        report.failures.append(f"{label}: {problem}")


def _record_no_answer(report: FuzzReport, label: str, error: Exception) -> None:
    """A timeout is a hang; a refused or reset connection means the server went away."""
    report.cases += 1
    if isinstance(error, (httpx.TimeoutException, requests.Timeout)):
        report.hangs += 1
        report.failures.append(f"{label}: no answer within {TIMEOUT_S} s")
    else:
        report.failures.append(f"{label}: no answer: {type(error).__name__}: {error}")


def check_still_serving(server: LiveServer, report: FuzzReport, after: str) -> None:
    """The server answers a normal request, is healthy and has nothing left running."""
    if server.health() != 200:
        report.failures.append(f"after {after}: /health is {server.health()}")
        return
    try:
        text = server.completion("The server still answers", 4)["choices"][0]["text"]
    except httpx.HTTPError as e:
        report.failures.append(f"after {after}: a normal request failed: {e}")
        return
    idle = server.wait_idle()
    if not text or idle["leaked_blocks"] or idle["minivllm:num_requests_running"]:
        report.failures.append(f"after {after}: not idle or no answer ({text!r}, {idle})")


# -- schemathesis over /openapi.json -------------------------------------------------------------
def fuzz_openapi(server: LiveServer, examples: int, seed: int = 0) -> FuzzReport:
    """`examples` cases per operation and mode (positive: fits the schema; negative: breaks
    it). Operations without inputs have no negative cases."""
    spec = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    report = FuzzReport()
    session = requests.Session()
    for result in schema.get_all_operations():
        for mode in GenerationMode:
            with contextlib.suppress(Unsatisfiable):  # nothing to break without inputs
                _fuzz_operation(server, session, result.ok(), mode, examples, seed, report)
    check_still_serving(server, report, "the OpenAPI fuzz")
    return report


def _fuzz_operation(server: LiveServer, session: requests.Session,
                    operation: schemathesis.APIOperation, mode: GenerationMode, examples: int,
                    seed: int, report: FuzzReport) -> None:
    label = f"{operation.label} {mode.value}"

    @hypothesis.seed(seed)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                         phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        try:
            response = case.call(base_url=server.url, session=session,
                                 headers=server.headers(), timeout=TIMEOUT_S)
        except requests.RequestException as e:
            _record_no_answer(report, f"{label} {case.body!r:.200}", e)
            return
        # schemathesis keeps every value of a header: a list.
        content_type = ",".join(response.headers.get("content-type", []))
        _record(report, f"{label} {case.body!r:.200}", response.status_code, content_type,
                response.text)

    run()


# -- Hypothesis over the sampling fields ------------------------------------------------------
_BIG = 2**70
_EXTREME_INTS = st.one_of(  # Hypothesis favours small ints: ask for each range on its own
    st.sampled_from([-1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1]),
    st.integers(2**64, _BIG), st.integers(-_BIG, -(2**63) - 1), st.integers(2**16, 2**63))
_EXTREME_FLOATS = st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e-300,
                                             5e-324, 1e300, -0.0]),
                            st.floats(allow_nan=True, allow_infinity=True))
_TEXT = st.text(max_size=6)

_PLAUSIBLE: dict[str, st.SearchStrategy] = {
    "n": st.integers(1, 3),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "temperature": st.floats(0, 2), "top_p": st.floats(0.01, 1), "min_p": st.floats(0, 1),
    "top_k": st.integers(-1, 600),
    "presence_penalty": st.floats(-2, 2), "frequency_penalty": st.floats(-2, 2),
    "repetition_penalty": st.floats(0.01, 5),
    "min_tokens": st.integers(0, 2),
    "stop": st.one_of(_TEXT.filter(bool), st.lists(_TEXT.filter(bool), max_size=4)),
    "stop_token_ids": st.lists(st.integers(0, 600), max_size=4),
    "ignore_eos": st.booleans(), "skip_special_tokens": st.booleans(),
    "include_stop_str_in_output": st.booleans(),
    "stream": st.booleans(),
    "logit_bias": st.dictionaries(_TEXT, st.floats(-100, 100), max_size=2),
}
_EXTREME: dict[str, st.SearchStrategy] = {
    "n": _EXTREME_INTS, "seed": st.one_of(_EXTREME_INTS, _EXTREME_FLOATS, _TEXT),
    "temperature": _EXTREME_FLOATS, "top_p": _EXTREME_FLOATS, "min_p": _EXTREME_FLOATS,
    "top_k": _EXTREME_INTS,
    "presence_penalty": _EXTREME_FLOATS, "frequency_penalty": _EXTREME_FLOATS,
    "repetition_penalty": _EXTREME_FLOATS,
    "max_tokens": st.one_of(_EXTREME_INTS, st.none(), st.just(0)),
    "min_tokens": _EXTREME_INTS,
    "stop": st.lists(st.text(max_size=300), min_size=5, max_size=40),
    "stop_token_ids": st.lists(_EXTREME_INTS, min_size=1, max_size=40),
    "stream_options": st.fixed_dictionaries(
        {}, optional={"include_usage": st.one_of(st.booleans(), st.none(), _TEXT)}),
    "logit_bias": st.dictionaries(_TEXT, _EXTREME_FLOATS, max_size=3),
}
_PROMPTS = st.one_of(_TEXT.filter(bool),
                     st.lists(st.integers(0, VOCAB_SIZE - 1), min_size=1, max_size=16),
                     st.lists(st.lists(st.integers(0, VOCAB_SIZE - 1), min_size=1, max_size=8),
                              min_size=1, max_size=3))
_MESSAGES = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "wizard", ""]),
     "content": st.one_of(_TEXT, st.none(),
                          st.sampled_from(["raise-template-error", "divide-by-zero"]))}),
    min_size=1, max_size=3)
_ROUTE_FIELDS = {
    "/v1/completions": ({"echo": st.booleans(), "logprobs": st.integers(0, 20)},
                        {"logprobs": _EXTREME_INTS, "prompt": st.one_of(
                            st.lists(_EXTREME_INTS, min_size=1, max_size=4), st.just([]),
                            st.lists(st.lists(_EXTREME_INTS, max_size=3), max_size=3))}),
    "/v1/chat/completions": (
        {"logprobs": st.booleans(), "top_logprobs": st.integers(0, 20),
         "add_generation_prompt": st.booleans(), "continue_final_message": st.booleans(),
         "echo": st.booleans(),
         "chat_template_kwargs": st.dictionaries(
             st.sampled_from(["messages", "tokenize", "add_generation_prompt", "tools", "x"]),
             st.one_of(st.integers(), _TEXT, st.booleans()), max_size=2)},
        {"top_logprobs": _EXTREME_INTS, "max_completion_tokens": _EXTREME_INTS,
         "messages": st.one_of(st.just([]), st.lists(st.dictionaries(_TEXT, _TEXT, max_size=3),
                                                     max_size=3))}),
}


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """(route, body): a valid request with a few plausible sampling fields, then one or two
    fields set to an extreme value (a 70-bit int, NaN, an infinity, 40 stop strings, ...).
    One bad field in an otherwise good request gets past the checks that a request full of
    bad values trips first, so it reaches the deepest code that could mishandle it."""
    route = draw(st.sampled_from(sorted(_ROUTE_FIELDS)))
    plausible, extreme = _ROUTE_FIELDS[route]
    plausible, extreme = {**_PLAUSIBLE, **plausible}, {**_EXTREME, **extreme}
    body: dict[str, Any] = {"max_tokens": draw(st.integers(1, 8))}
    body |= ({"prompt": draw(_PROMPTS)} if route == "/v1/completions"
             else {"messages": draw(_MESSAGES)})
    for name in draw(st.sets(st.sampled_from(sorted(plausible)), max_size=5)):
        body[name] = draw(plausible[name])
    for name in draw(st.sets(st.sampled_from(sorted(extreme)), min_size=1, max_size=2)):
        body[name] = draw(extreme[name])
    if body.get("stream_options") is not None and not body.get("stream"):
        body["stream"] = draw(st.booleans())
    return route, body


def fuzz_sampling(server: LiveServer, examples: int, seed: int = 0) -> FuzzReport:
    report = FuzzReport()
    with server.http(timeout=TIMEOUT_S) as http:
        @hypothesis.seed(seed)
        @hypothesis.given(request=_requests())
        @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                             phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        def run(request: tuple[str, dict[str, Any]]) -> None:
            route, body = request
            # allow_nan: Python's json (and the server's) reads NaN and Infinity.
            content = json.dumps(body, allow_nan=True).encode()
            try:
                response = http.post(route, content=content,
                                     headers={"Content-Type": "application/json"})
            except httpx.TransportError as e:
                _record_no_answer(report, f"{route} {body!r:.200}", e)
                return
            _record(report, f"{route} {body!r:.200}", response.status_code,
                    response.headers.get("content-type", ""), response.text)

        run()
    check_still_serving(server, report, "the sampling fuzz")
    return report


# -- hand-written hostile requests ----------------------------------------------------------
@dataclass
class HostileCase:
    name: str
    route: str
    body: Any = None
    """JSON-encoded, unless bytes (sent as they are) or a function making an iterator of bytes
    (sent chunked, without a Content-Length)."""
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    expect: tuple[int, ...] = (400,)


def _chat(content: str = "Hi", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


def _completion(**extra: Any) -> dict[str, Any]:
    return {"prompt": "Hello", "max_tokens": 4, **extra}


def _chunks(total: int, size: int = 2**20) -> Callable[[], Iterator[bytes]]:
    def generate() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(total // size):
            yield b"x" * size
        yield b'"}'
    return generate


C, CHAT = "/v1/completions", "/v1/chat/completions"
HOSTILE_CASES: list[HostileCase] = [
    # Sizes: every one of these would cost the server memory or CPU out of all proportion.
    HostileCase("n of 10^9", C, _completion(n=10**9)),
    HostileCase("n past --max-n-sequences", C, _completion(n=65)),
    HostileCase("n within the cap", C, _completion(n=64, max_tokens=2), expect=(200,)),
    HostileCase("a batch of prompts times n past the cap", C,
                {"prompt": ["a"] * 33, "n": 2, "max_tokens": 1}),
    HostileCase("n of 10^9 in a chat", CHAT, _chat(n=10**9)),
    HostileCase("max_tokens of 10^9", C, _completion(max_tokens=10**9)),
    HostileCase("max_tokens past 64 bits", CHAT, _chat(max_tokens=2**70)),
    HostileCase("max_completion_tokens of 10^9", CHAT, _chat(max_completion_tokens=10**9)),
    HostileCase("5000 stop strings", C, _completion(stop=[f"s{i}" for i in range(5000)])),
    HostileCase("5000 stop token ids", C, _completion(stop_token_ids=list(range(5000)))),
    HostileCase("16 stop strings (the cap)", C, _completion(stop=[f"s{i}" for i in range(16)]),
                expect=(200,)),
    HostileCase("a 1 MB stop string", C, _completion(stop="x" * 2**20), expect=(200,)),
    HostileCase("logprobs of 10^9", C, _completion(logprobs=10**9)),
    HostileCase("top_logprobs of 10^9", CHAT, _chat(logprobs=True, top_logprobs=10**9)),
    HostileCase("a 50 MB body", C, b'{"prompt": "' + b"x" * 50 * 2**20 + b'"}',
                expect=(413,)),
    HostileCase("a 5 MB chunked body", C, _chunks(5 * 2**20), expect=(413,)),
    HostileCase("a 3 MB prompt (under the body limit)", C,
                {"prompt": "x" * 3 * 2**20, "max_tokens": 1}),
    HostileCase("100000 messages", CHAT, {"messages": [{"role": "user", "content": "x"}] * 10**5}),
    # Malformed bodies.
    HostileCase("100000 nested arrays", C, b"[" * 10**5 + b"]" * 10**5),
    HostileCase("100000 nested objects", C, b'{"a":' * 10**5 + b"1" + b"}" * 10**5),
    HostileCase("60 nested lists in chat_template_kwargs", CHAT,
                _chat(chat_template_kwargs={"x": json.loads("[" * 60 + "]" * 60)}),
                expect=(200,)),
    HostileCase("900 nested lists in chat_template_kwargs", CHAT,
                _chat(chat_template_kwargs={"x": json.loads("[" * 900 + "]" * 900)}),
                expect=(400,)),
    HostileCase("invalid UTF-8", C, b'{"prompt": "\xff\xfe\xc3", "max_tokens": 4}'),
    HostileCase("a UTF-16 body (json.loads reads it: RFC 7159)", C,
                json.dumps(_completion()).encode("utf-16"), expect=(200, 400)),
    HostileCase("a lone surrogate in the prompt", C, b'{"prompt": "a\\ud800b", "max_tokens": 4}'),
    HostileCase("a lone surrogate in a message", CHAT,
                b'{"messages": [{"role": "user", "content": "\\udfff"}]}'),
    HostileCase("a lone surrogate in the model name", C,
                b'{"prompt": "x", "model": "\\ud800", "max_tokens": 4}'),
    HostileCase("NaN temperature", C, b'{"prompt": "x", "max_tokens": 4, "temperature": NaN}'),
    HostileCase("infinite repetition_penalty", C,
                b'{"prompt": "x", "max_tokens": 4, "repetition_penalty": Infinity}',
                expect=(200,)),
    HostileCase("an empty body", C, b""),
    HostileCase("a JSON string", C, b'"prompt"'),
    HostileCase("a JSON array", CHAT, b"[]"),
    HostileCase("JSON sent as text/plain", C, json.dumps(_completion()).encode(),
                headers={"Content-Type": "text/plain"}),
    HostileCase("a prompt that is an object", C, {"prompt": {"a": 1}}),
    # Token ids.
    HostileCase("a token id = vocab size", C, _completion(prompt=[1, VOCAB_SIZE])),
    HostileCase("a negative token id", C, _completion(prompt=[-1])),
    HostileCase("a token id past 64 bits", C, _completion(prompt=[2**70])),
    HostileCase("an out-of-vocabulary id with echo", C, _completion(prompt=[2**70], echo=True)),
    HostileCase("an out-of-vocabulary id in a batch", C, _completion(prompt=[[1], [10**6]])),
    HostileCase("an empty prompt", C, _completion(prompt=[])),
    HostileCase("an empty prompt in a batch", C, _completion(prompt=[[1, 2], []])),
    HostileCase("detokenize an id past 64 bits", "/detokenize", {"tokens": [2**70]}),
    HostileCase("out-of-vocabulary stop_token_ids", C,
                _completion(stop_token_ids=[10**6, 2**63], min_tokens=2), expect=(200,)),
    HostileCase("a stop_token_id past 64 bits", C, _completion(stop_token_ids=[2**70]),
                expect=(200,)),
    # Seeds.
    HostileCase("a negative seed", C, _completion(seed=-5, temperature=1), expect=(200,)),
    HostileCase("seed -1 (no seed)", C, _completion(seed=-1, temperature=1), expect=(200,)),
    HostileCase("the smallest 64-bit seed, n=3", C,
                _completion(seed=-(2**63), temperature=1, n=3), expect=(200,)),
    HostileCase("the largest 64-bit seed, n=64", C,
                _completion(seed=2**63 - 1, temperature=1, n=64, max_tokens=1), expect=(200,)),
    HostileCase("a seed of 2^64", C, _completion(seed=2**64, temperature=1)),
    HostileCase("a seed below -2^63", C, _completion(seed=-(2**63) - 1, temperature=1)),
    HostileCase("a float seed", C, _completion(seed=1.5, temperature=1)),
    HostileCase("a whole float seed", C, _completion(seed=2.0, temperature=1), expect=(200,)),
    HostileCase("a string seed", C, _completion(seed="abc")),
    # Messages and the chat template.
    HostileCase("no messages", CHAT, {"messages": []}),
    HostileCase("an unknown role", CHAT, {"messages": [{"role": "wizard", "content": "hi"}],
                                          "max_tokens": 4}, expect=(200, 400)),
    HostileCase("a message without content", CHAT, {"messages": [{"role": "user"}],
                                                    "max_tokens": 4}, expect=(200, 400)),
    HostileCase("a message without a role", CHAT, {"messages": [{"content": "hi"}]}),
    HostileCase("an image content part", CHAT, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}),
    HostileCase("a chat template that raises", CHAT, _chat("raise-template-error")),
    HostileCase("a chat template that divides by zero", CHAT, _chat("divide-by-zero")),
    HostileCase("a chat template that raises, in /tokenize", "/tokenize",
                {"messages": [{"role": "user", "content": "divide-by-zero"}]}),
    HostileCase("chat_template_kwargs overriding messages", CHAT,
                _chat(chat_template_kwargs={"messages": 5, "add_generation_prompt": "x"}),
                expect=(200,)),
    HostileCase("continue_final_message with add_generation_prompt", CHAT,
                _chat(continue_final_message=True)),
    # Routes, methods, models.
    HostileCase("an unknown /v1 route", "/v1/engines", {}, expect=(404,)),
    HostileCase("GET on a POST route", C, method="GET", expect=(405,)),
    HostileCase("a 100 kB model name", C, _completion(model="m" * 10**5), expect=(404,)),
    HostileCase("a 10 kB path", "/v1/models/" + "x" * 10**4, method="GET", expect=(404,)),
    HostileCase("stream_options without stream", C,
                _completion(stream_options={"include_usage": True})),
    HostileCase("min_tokens above max_tokens", C, _completion(min_tokens=10)),
    HostileCase("echo with logprobs", C, _completion(echo=True, logprobs=1)),
]


def _send_raw_content_length(server: LiveServer, claimed: int) -> int:
    """Announce a body of `claimed` bytes and send one: the answer must come without the rest."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_S) as sock:
        auth = "".join(f"{k}: {v}\r\n" for k, v in server.headers().items())
        sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\n{auth}"
                     "Content-Type: application/json\r\n"
                     f"Content-Length: {claimed}\r\n\r\n{{".encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


def run_hostile(server: LiveServer, cases: list[HostileCase] = HOSTILE_CASES) -> FuzzReport:
    report = FuzzReport()
    with server.http(timeout=TIMEOUT_S) as http:
        for case in cases:
            if isinstance(case.body, bytes):
                kwargs: dict[str, Any] = {"content": case.body}
            elif callable(case.body):
                kwargs = {"content": case.body()}
            else:
                kwargs = {"json": case.body} if case.body is not None else {}
            headers = {"Content-Type": "application/json"} | case.headers
            try:
                response = http.request(case.method, case.route, headers=headers, **kwargs)
            except httpx.TransportError as e:
                _record_no_answer(report, case.name, e)
                continue
            _record(report, case.name, response.status_code,
                    response.headers.get("content-type", ""), response.text)
            if response.status_code not in case.expect:
                report.failures.append(f"{case.name}: HTTP {response.status_code}, expected "
                                       f"{case.expect}: {response.text[:200]}")
    claimed = 50 * 2**20
    try:
        status = _send_raw_content_length(server, claimed)
    except OSError as e:
        _record_no_answer(report, f"Content-Length of {claimed}", e)
    else:
        report.cases += 1
        report.by_status[status] += 1
        if status != 413:
            report.failures.append(f"Content-Length of {claimed}: HTTP {status}, expected 413")
    check_still_serving(server, report, "the hostile cases")
    return report
