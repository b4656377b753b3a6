"""`merge_async_iterators`: interleaves several streams and closes them all when stopped early
(which is how a multi-prompt completion aborts every engine request of a gone client)."""

import asyncio

from minivllm.server.utils import merge_async_iterators


def test_merge_yields_everything_with_its_source():
    async def numbers(start: int, delay: float):
        for i in range(start, start + 3):
            await asyncio.sleep(delay)
            yield i

    async def run():
        return [pair async for pair in merge_async_iterators(numbers(0, 0.001),
                                                             numbers(10, 0.0015))]

    pairs = asyncio.run(run())
    assert sorted(pairs) == [(0, 0), (0, 1), (0, 2), (1, 10), (1, 11), (1, 12)]
    assert [v for i, v in pairs if i == 0] == [0, 1, 2]  # each source keeps its order


def test_stopping_early_closes_every_source():
    closed = []

    async def endless(name: str):
        try:
            while True:
                await asyncio.sleep(0.001)
                yield name
        finally:
            closed.append(name)

    async def run():
        merged = merge_async_iterators(endless("a"), endless("b"))
        async for _ in merged:
            break
        await merged.aclose()

    asyncio.run(run())
    assert sorted(closed) == ["a", "b"]


def test_cancelling_the_consumer_closes_every_source():
    closed = []

    async def endless(name: str):
        try:
            while True:
                await asyncio.sleep(0.001)
                yield name
        finally:
            closed.append(name)

    async def consume():
        async for _ in merge_async_iterators(endless("a"), endless("b"), endless("c")):
            pass

    async def run():
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert sorted(closed) == ["a", "b", "c"]
