"""Lab 4's server under test: `python -m minivllm.server` in a subprocess, on loopback.

The graded checks and `record` start the same server: the tiny random model (so it starts in
seconds and answers deterministically) on the provided baselines of labs 1–3 (reserved KV
blocks, static batching, PyTorch attention), so lab 4 is graded on the server alone. It runs on
the CPU even where a GPU exists: the protocol is what is graded, and one set of reference
answers (float32) then serves every machine. `--port 0` lets the OS choose a free port; the
server logs the URL it listens on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from minivllm.server.remote import ServerClient, launch_server, stop_server

API_KEY = "lab4-key"
MODEL_NAME = "tiny"
MAX_MODEL_LEN = 128
STARTUP_TIMEOUT_S = 120


SERVER_ARGS = ["--model", "random:tiny-llama", "--served-model-name", MODEL_NAME,
               "--max-model-len", str(MAX_MODEL_LEN), "--max-num-seqs", "4", "--seed", "0",
               "--api-key", API_KEY, "--device", "cpu", "--block-size", "16",
               "--num-gpu-blocks-override", "64", "--kv-allocator", "reserved",
               "--scheduler", "static", "--attention", "torch"]


@contextmanager
def running_server(log: Path) -> Iterator[ServerClient]:
    """Start the server, wait until /health answers, stop it (SIGINT) on exit."""
    proc, url = launch_server(["--host", "127.0.0.1", *SERVER_ARGS], log, STARTUP_TIMEOUT_S)
    try:
        yield ServerClient(url, API_KEY, log)
    finally:
        stop_server(proc, timeout=20)
