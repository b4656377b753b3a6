"""`--async-scheduling` on the server (the default on a GPU, off on a CPU): concurrent streamed
and non-streamed requests get the same tokens, a client that leaves mid-stream is aborted while
a step is in flight, and the engine ends idle with every KV block back."""

import asyncio

import openai
import pytest
from server_utils import Server, start_server

from minivllm.server.remote import stop_server


@pytest.fixture(scope="module")
def overlapped(tmp_path_factory):
    log = tmp_path_factory.mktemp("async") / "server.log"
    proc, url = start_server(["--model", "random:tiny-llama", "--served-model-name", "tiny",
                              "--max-model-len", "256", "--async-scheduling"], log)
    yield Server(url, None, log, model="tiny", max_model_len=256)
    stop_server(proc)


def test_concurrent_streams_match_and_blocks_are_freed(overlapped):
    prompts = [f"request {i}: " + "xy" * i for i in range(12)]

    async def one(client: openai.AsyncOpenAI, prompt: str, stream: bool) -> str:
        kwargs = dict(model="tiny", prompt=prompt, max_tokens=20, temperature=0,
                      extra_body={"ignore_eos": True})
        if not stream:
            return (await client.completions.create(**kwargs)).choices[0].text
        chunks = await client.completions.create(stream=True, **kwargs)
        return "".join([c.choices[0].text async for c in chunks])

    async def run() -> tuple[list[str], list[str]]:
        client = overlapped.async_openai()
        try:
            streamed = asyncio.gather(*(one(client, p, True) for p in prompts))
            whole = asyncio.gather(*(one(client, p, False) for p in prompts))
            return await streamed, await whole
        finally:
            await client.close()

    streamed, whole = asyncio.run(run())
    assert streamed == whole and all(streamed)

    with overlapped.http() as http, http.stream("POST", "/v1/completions", json={
            "model": "tiny", "prompt": "leave early", "max_tokens": 200, "stream": True,
            "ignore_eos": True}) as r:
        lines = r.iter_lines()
        for _ in range(3):
            assert next(line for line in lines if line).startswith("data: {")
    idle = overlapped.wait_idle()
    assert idle["minivllm:num_requests_running"] == 0
    assert idle["minivllm:kv_cache_usage_perc"] == 0
