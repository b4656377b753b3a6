"""Lab 4's reference outputs: what the reference server answers to a fixed set of requests.

The requests are stored with the answers, so the checks send exactly these. Answers are reduced
by `minivllm.labs.openai_checks` (texts, finish reasons, usage, status codes; no ids or
timestamps). Greedy sampling on the CPU (see `server_harness`) makes the texts deterministic.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from minivllm.labs.openai_checks import send
from minivllm.labs.record import Recorded, write_json
from minivllm.labs.server_harness import MAX_MODEL_LEN, MODEL_NAME, running_server

FILE = "lab4_server.json"
CHAT = [{"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is the capital of France?"}]


def requests() -> dict[str, dict[str, Any]]:
    """name -> {kind, path, body | raw, auth}; kind is json, stream or error (see
    `openai_checks.send`)."""
    completion = {"model": MODEL_NAME, "prompt": "Hello, my name is", "max_tokens": 12,
                  "temperature": 0}
    chat = {"model": MODEL_NAME, "messages": CHAT, "max_tokens": 10, "temperature": 0}
    usage = {"stream": True, "stream_options": {"include_usage": True}}
    table: dict[str, dict[str, Any]] = {
        "completion": {"kind": "json", "path": "/v1/completions", "body": completion},
        "completion_batch_n2": {"kind": "json", "path": "/v1/completions", "body": {
            "model": MODEL_NAME, "prompt": [[72, 101, 108, 108, 111], [87, 104, 121]],
            "max_tokens": 6, "temperature": 0, "n": 2}},
        "chat": {"kind": "json", "path": "/v1/chat/completions", "body": chat},
        "completion_stream": {"kind": "stream", "path": "/v1/completions",
                              "body": {**completion, **usage}},
        "chat_stream": {"kind": "stream", "path": "/v1/chat/completions",
                        "body": {**chat, **usage}},
        "chat_stream_n2": {"kind": "stream", "path": "/v1/chat/completions",
                           "body": {**chat, "n": 2, "max_tokens": 5, "stream": True}},
        "error_max_tokens_zero": {"kind": "error", "path": "/v1/completions",
                                  "body": {**completion, "max_tokens": 0}},
        "error_negative_temperature": {"kind": "error", "path": "/v1/chat/completions",
                                       "body": {**chat, "temperature": -1}},
        "error_prompt_too_long": {"kind": "error", "path": "/v1/completions",
                                  "body": {**completion, "prompt": [65] * (MAX_MODEL_LEN + 5)}},
        "error_unknown_model": {"kind": "error", "path": "/v1/chat/completions",
                                "body": {**chat, "model": "no-such-model"}},
        "error_invalid_json": {"kind": "error", "path": "/v1/chat/completions",
                               "raw": '{"model": "tiny", "messages": ['},
        "error_missing_messages": {"kind": "error", "path": "/v1/chat/completions",
                                   "body": {"model": MODEL_NAME}},
        "error_stream_invalid": {"kind": "error", "path": "/v1/chat/completions",
                                 "body": {**chat, **usage, "max_tokens": -3}},
        "error_no_api_key": {"kind": "error", "path": "/v1/chat/completions", "body": chat,
                             "auth": False},
    }
    return table


def with_stop_string(server, table: dict[str, dict[str, Any]]) -> None:
    """Add a request whose stop string is a piece of the greedy completion's text, so that it
    must end early with finish_reason "stop"."""
    text = send(server, table["completion"])["choices"][0]["text"]
    # Prefer a whole token's text (the tiny model's byte tokenizer writes unused ids as
    # <|reserved_N|>); else any two characters that first occur past the start.
    tokens = [m for m in re.finditer(r"<\|reserved_\d+\|>", text)
              if m.start() > 0 and text.find(m[0]) == m.start()]
    stop = tokens[0][0] if tokens else next(
        text[i:i + 2] for i in range(3, len(text) - 2)
        if text.find(text[i:i + 2]) == i and text[i:i + 2].strip())
    table["completion_stop"] = {"kind": "json", "path": "/v1/completions",
                                "body": {**table["completion"]["body"], "stop": [stop]}}


def record(out_dir: Path) -> list[Recorded]:
    table = requests()
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp) / "log") as srv:
        with_stop_string(srv, table)
        recorded = {name: {**request, "expected": send(srv, request)}
                    for name, request in table.items()}
        with srv.http() as http:
            models = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert recorded["completion_stop"]["expected"]["choices"][0]["finish_reason"] == "stop"
    write_json(out_dir / FILE, {"models": models, "requests": recorded})
    return [Recorded(FILE, device="cpu", dtypes=["float32"])]

