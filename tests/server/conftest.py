"""The session's server: the embedded SmolLM2 on CPU with small settings (512 tokens of
context, 4 sequences per step so concurrency tests queue), an API key (so every client sends
one) and two served names. It starts once; every test file of this folder shares it."""

from collections.abc import Iterator

import httpx
import openai
import pytest
from server_utils import (
    ALIAS,
    API_KEY,
    MAX_MODEL_LEN,
    MAX_NUM_SEQS,
    MODEL,
    Server,
    start_server,
)

from minivllm.server.remote import stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc, url = start_server(
        ["--max-model-len", str(MAX_MODEL_LEN), "--max-num-seqs", str(MAX_NUM_SEQS),
         "--api-key", API_KEY, "--served-model-name", MODEL, ALIAS, "--seed", "0"], log)
    yield Server(url, API_KEY, log)
    stop_server(proc)


@pytest.fixture(scope="session")
def client(server: Server) -> openai.OpenAI:
    return server.openai()


@pytest.fixture(scope="session")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.http() as c:
        yield c
