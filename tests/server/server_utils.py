"""A real `python -m minivllm.server` on loopback (`minivllm.server.remote`), and clients for it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from minivllm.server.remote import ServerClient, launch_server

API_KEY = "test-key-123"
MODEL = "smollm2"
ALIAS = "smol-alias"
MAX_MODEL_LEN = 512
MAX_NUM_SEQS = 4
STARTUP_TIMEOUT_S = 240


@dataclass
class Server(ServerClient):
    """The server's clients (`ServerClient`) and what it was started with."""

    model: str = MODEL
    alias: str = ALIAS
    max_model_len: int = MAX_MODEL_LEN
    max_num_seqs: int = MAX_NUM_SEQS


def start_server(args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start the server on loopback, wait for /health, return the process and its base URL."""
    return launch_server(["--host", "127.0.0.1", *args], log, STARTUP_TIMEOUT_S)
