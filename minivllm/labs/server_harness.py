"""Lab 4's server under test: `python -m minivllm.server` in a subprocess, on loopback.

The graded checks and `record` start the same server: the tiny random model (so it starts in
seconds and answers deterministically) on the provided baselines of labs 1–3 (reserved KV
blocks, static batching, PyTorch attention), so lab 4 is graded on the server alone. It runs on
the CPU even where a GPU exists: the protocol is what is graded, and one set of reference
answers (float32) then serves every machine. `--port 0` lets the OS choose a free port; the
server logs the URL it listens on.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

API_KEY = "lab4-key"
MODEL_NAME = "tiny"
MAX_MODEL_LEN = 128
STARTUP_TIMEOUT_S = 120


SERVER_ARGS = ["--model", "random:tiny-llama", "--served-model-name", MODEL_NAME,
               "--max-model-len", str(MAX_MODEL_LEN), "--max-num-seqs", "4", "--seed", "0",
               "--api-key", API_KEY, "--device", "cpu", "--block-size", "16",
               "--num-gpu-blocks-override", "64", "--kv-allocator", "reserved",
               "--scheduler", "static", "--attention", "torch"]


@dataclass
class RunningServer:
    url: str
    log: Path

    def http(self, api_key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def openai(self):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=API_KEY, max_retries=0,
                             timeout=60)


@contextmanager
def running_server(log: Path) -> Iterator[RunningServer]:
    """Start the server, wait until /health answers, stop it (SIGINT) on exit."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "minivllm.server", "--host", "127.0.0.1", "--port", "0",
             *SERVER_ARGS],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            yield RunningServer(_wait_until_healthy(proc, log), log)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_healthy(proc: subprocess.Popen, log: Path) -> str:
    """The server's URL once GET /health answers 200. Fail at once if the server exits or
    answers anything else: a server whose middleware raises (the release's stubs, or a bug)
    answers 500 for ever, and the log's traceback says why sooner than a timeout would."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}:\n"
                               f"{log.read_text()[-4000:]}")
        if url is None and (found := re.search(r"API server on (http://\S+)", log.read_text())):
            url = found[1]
        if url is not None:
            try:
                status = httpx.get(f"{url}/health", timeout=2).status_code
            except httpx.TransportError:
                status = None  # not listening yet
            if status == 200:
                return url
            if status is not None:  # up, but broken: waiting will not mend it
                time.sleep(1)  # let the server log the traceback behind the answer
                raise RuntimeError(f"the server answered GET /health with {status}:\n"
                                   f"{log.read_text()[-4000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"the server did not become healthy in {STARTUP_TIMEOUT_S} s:\n"
                       f"{log.read_text()[-4000:]}")
