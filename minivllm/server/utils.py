"""Two asyncio helpers the serving code needs, as in vLLM (`vllm/entrypoints/utils.py`,
`vllm/utils`): cancel a handler when its client hangs up, and merge several output streams."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")


async def listen_for_disconnect(request: Request) -> None:
    """Return once the client has closed the connection."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def with_cancellation(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Cancel a non-streaming handler as soon as its client disconnects (vLLM's decorator).

    A non-streaming completion sends nothing until it is done, so without this the server would
    go on generating for a client that is gone. Cancelling the handler cancels the `generate()`
    it awaits, which aborts the request and frees its KV blocks. (A streaming response notices
    the disconnect itself: Starlette cancels the body iterator.) The handler must take the
    request as `raw_request`.
    """

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        handler_task = asyncio.create_task(handler(*args, **kwargs))
        disconnect_task = asyncio.create_task(listen_for_disconnect(kwargs["raw_request"]))
        done, pending = await asyncio.wait([handler_task, disconnect_task],
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if handler_task in done:
            return handler_task.result()
        return None  # the client is gone: there is no one to answer

    return wrapper


async def merge_async_iterators(
        *iterators: AsyncGenerator[T, None]) -> AsyncGenerator[tuple[int, T], None]:
    """Yield `(i, item)` from several async generators as their items arrive.

    A completion request with a batch of prompts runs one engine request per prompt; this
    interleaves their outputs. If the consumer stops early (or is cancelled), every generator is
    closed, which aborts the engine requests that have not finished.
    """
    if len(iterators) == 1:  # the common case needs no tasks
        try:
            async for item in iterators[0]:
                yield 0, item
        finally:
            await iterators[0].aclose()
        return

    async def next_item(i: int, it: AsyncIterator[T]) -> tuple[int, T]:
        return i, await anext(it)

    pending = {asyncio.ensure_future(next_item(i, it)): i for i, it in enumerate(iterators)}
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                i = pending.pop(task)
                try:
                    item = task.result()
                except StopAsyncIteration:
                    continue
                pending[asyncio.ensure_future(next_item(i, iterators[i]))] = i
                yield item
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for it in iterators:
            await it.aclose()
