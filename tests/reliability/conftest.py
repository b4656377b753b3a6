"""Servers for the reliability checks (`benchmarks/reliability/`), one per module that needs it.

CI runs the small sizes, about a minute in all on two CPU cores; `MINIVLLM_RELIABILITY_FULL=1`
runs the full sizes of `python -m benchmarks.reliability.run` (a few minutes) instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from benchmarks.reliability import fuzz, soak
from benchmarks.reliability.harness import LiveServer, live_server

FULL = os.environ.get("MINIVLLM_RELIABILITY_FULL") == "1"


@pytest.fixture(scope="session")
def fuzz_sizes() -> fuzz.FuzzSizes:
    return fuzz.FuzzSizes() if FULL else fuzz.FuzzSizes.ci()


@pytest.fixture(scope="session")
def soak_config() -> soak.SoakConfig:
    return soak.SoakConfig() if FULL else soak.SoakConfig.ci()


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory) -> Iterator[LiveServer]:
    """API key, CORS for one origin, request and output logging, a chat template that raises
    on two messages."""
    folder = tmp_path_factory.mktemp("fuzz")
    with live_server(fuzz.server_args(folder), folder / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def plain_server(tmp_path_factory) -> Iterator[LiveServer]:
    """Default flags (no key, no CORS, no request logging, no --host) on the soak's small pool,
    with the FastAPI docs off."""
    folder = tmp_path_factory.mktemp("plain")
    with live_server(soak.SERVER_ARGS, folder / "server.log", api_key=None) as server:
        yield server
