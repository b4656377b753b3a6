"""Load with faults: hundreds of concurrent streams against 8 sequences per step and a KV pool
that forces preemption, a third of the clients hanging up at random points."""

from __future__ import annotations

import asyncio

from benchmarks.reliability import soak
from benchmarks.reliability.harness import LiveServer


def test_soak_with_disconnects(plain_server: LiveServer, soak_config: soak.SoakConfig):
    report = asyncio.run(soak.run_soak(plain_server, soak_config))
    assert report.server_errors == 0
    assert report.other_failures == []
    assert report.mismatches == []  # every completed text equals its isolated greedy run
    assert report.completed > 0 and report.disconnected > soak_config.num_requests // 5
    assert report.preemptions > 0
    # Afterwards the engine is empty: nothing running or waiting, every KV block free.
    assert (report.running_after, report.waiting_after, report.leaked_blocks) == (0, 0, 0)
