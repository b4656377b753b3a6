"""A real `python -m minivllm.server` on loopback, and what the reliability checks read from it.

The server runs in its own process, as in production: a crash, a hang or an exit is then the
server's own, and `/metrics` is the only window into the engine (running and waiting requests,
KV-cache usage, preemptions), as it would be for an operator. `--port 0` lets the OS pick a free
port; the URL is read from the start-up log. `--host` is left at its default, so every run also
checks that the server listens on loopback unless told otherwise.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from minivllm.server import remote

API_KEY = "reliability-key"
MODEL = "random:tiny-llama"
STARTUP_TIMEOUT_S = 120
EXIT_TIMEOUT_S = 30

BASE_ARGS = ["--model", MODEL, "--served-model-name", "tiny", "--device", "cpu", "--seed", "0",
             "--max-model-len", "128", "--max-num-seqs", "8"]
"""The tiny random Llama on the CPU: it starts in seconds and a step takes milliseconds, so the
load the checks put on the server is HTTP, scheduling and bookkeeping, not matrix products."""


@dataclass
class LiveServer(remote.ServerClient):
    """The server's clients (`remote.ServerClient`) and its process."""

    proc: subprocess.Popen

    def completion(self, prompt: str | list[int], max_tokens: int, **extra) -> dict:
        """One greedy completion, checked to succeed: the server still serves."""
        with self.http() as http:
            response = http.post("/v1/completions", json={
                "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra})
        response.raise_for_status()
        return response.json()


def start_server(extra_args: list[str], log: Path, api_key: str | None = API_KEY,
                 env: dict[str, str] | None = None) -> LiveServer:
    """Start the server with BASE_ARGS + extra_args; return once /health answers 200."""
    args = [*BASE_ARGS, *extra_args]
    if api_key:
        args += ["--api-key", api_key]
    proc, url = remote.launch_server(args, log, STARTUP_TIMEOUT_S, env)
    return LiveServer(url, api_key, log, proc)


def stop_server(server: LiveServer) -> int:
    """Ctrl-C the server (its normal shutdown), kill it if that takes too long; its exit code."""
    return remote.stop_server(server.proc, EXIT_TIMEOUT_S)


@contextmanager
def live_server(extra_args: list[str], log: Path, api_key: str | None = API_KEY,
                env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    server = start_server(extra_args, log, api_key, env)
    try:
        yield server
    finally:
        stop_server(server)


def sse_events(lines: list[str]) -> list[dict | str]:
    """The `data:` payloads of an SSE stream: parsed JSON, or the string `[DONE]`."""
    events: list[dict | str] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events
