"""Engine faults: a step that raises ends every request in flight with a 500 (an error event
in a stream), /health turns 503 and the process exits with a clear log; a request that could
never fit the KV cache is a 400 at once. Then the same properties of `AsyncLLMEngine` itself,
without HTTP: cancelled requests leave nothing behind, a failed step fails everyone."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from benchmarks.reliability import faults
from minivllm.config import EngineConfig
from minivllm.engine.async_llm_engine import AsyncLLMEngine, EngineDeadError
from minivllm.engine.llm_engine import FAIL_AT_STEP_ENV, LLMEngine
from minivllm.sampling_params import SamplingParams


def test_a_failing_step_ends_every_request_and_the_process(tmp_path):
    report = faults.run_engine_fault(tmp_path, keep_alive=False)
    assert set(report.admission_refusals) == {400}
    assert set(report.stream_endings) == {"500 event"}  # after the 200: an event, then [DONE]
    assert set(report.plain_statuses) == {500}
    assert report.exit_code == 1 and report.exit_after_s < 15
    assert report.log_explains
    assert report.ok


def test_keep_alive_after_engine_death_answers_503_and_500(tmp_path):
    report = faults.run_engine_fault(tmp_path, keep_alive=True)
    assert set(report.health_after) == {503}
    assert set(report.after_death) == {500}
    assert set(report.stream_endings) == {"500 event"}
    assert report.exit_code == 1  # Ctrl-C: it still says the engine died
    assert report.ok


# -- AsyncLLMEngine in-process -------------------------------------------------------------
def make_engine() -> AsyncLLMEngine:
    return AsyncLLMEngine(LLMEngine(EngineConfig(
        model="random:tiny-llama", device="cpu", max_model_len=128, max_num_seqs=4,
        num_gpu_blocks_override=12)))


GREEDY = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)


def test_cancelled_and_closed_requests_leave_nothing_behind():
    engine = make_engine()
    rng = random.Random(0)

    async def consume(i: int, stop_after: int | None) -> int:
        received = 0
        outputs = engine.generate([1 + i, 2, 3], GREEDY, f"req-{i}")
        async with contextlib.aclosing(outputs):  # closing early aborts the request
            async for _ in outputs:
                received += 1
                if received == stop_after:
                    break
        return received

    async def main() -> None:
        engine.start()
        tasks = [asyncio.create_task(consume(i, rng.choice([None, None, 1, 5, 20])))
                 for i in range(30)]
        await asyncio.sleep(0.05)
        for task in tasks[::4]:  # and a handler cancelled mid-await, as on a disconnect
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        engine.shutdown()  # applies the queued aborts first

    asyncio.run(main())
    llm = engine.engine
    assert llm.requests == {}
    assert not llm.scheduler.running and not llm.scheduler.waiting
    assert llm.kv_cache_manager.num_free_blocks == llm.kv_cache_manager.num_blocks
    assert llm.kv_cache_manager.usage == 0
    # The async layer's own per-request state (private, checked here on purpose).
    assert engine._collectors == {} and engine._times == {}


def test_a_failing_step_fails_every_request_and_kills_the_engine(monkeypatch):
    monkeypatch.setenv(FAIL_AT_STEP_ENV, "5")
    engine = make_engine()
    deaths: list[BaseException] = []
    engine.on_engine_dead = deaths.append

    async def consume(i: int) -> None:
        async for _ in engine.generate([1 + i, 2, 3], GREEDY, f"req-{i}"):
            pass

    async def main() -> list:
        engine.start()
        return await asyncio.gather(*(consume(i) for i in range(6)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, EngineDeadError) for r in results), results
    assert len(deaths) == 1 and "Injected fault at engine step 5" in str(deaths[0])
    with pytest.raises(EngineDeadError, match="restart the server"):
        engine.check_health()
    engine.shutdown()  # the thread is gone already: returns at once
