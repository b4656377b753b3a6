"""Server-Sent Events, client disconnects and concurrency."""

import asyncio
import json
import time

import httpx
import openai

PROMPT = "A short story about a robot:"
MESSAGES = [{"role": "user", "content": "Tell me about the sea."}]


def sse_events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of a raw SSE body, checking the framing on the way."""
    body = response.read().decode()
    assert body.endswith("\n\n")
    events = body[:-2].split("\n\n")
    assert all(e.startswith("data: ") for e in events), events
    return [e[len("data: "):] for e in events]


def test_raw_completion_stream_framing(server, http: httpx.Client):
    with http.stream("POST", "/v1/completions", json={
            "prompt": PROMPT, "max_tokens": 5, "stream": True, "temperature": 0,
            "stream_options": {"include_usage": True}, "ignore_eos": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("cmpl-")
    assert all(c["object"] == "text_completion" for c in chunks)
    *text_chunks, usage_chunk = chunks
    assert [c["choices"][0]["finish_reason"] for c in text_chunks] == [None] * 4 + ["length"]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5


def test_raw_chat_stream_framing(server, http: httpx.Client):
    with http.stream("POST", "/v1/chat/completions", json={
            "messages": MESSAGES, "max_tokens": 4, "stream": True, "n": 2,
            "ignore_eos": True}) as response:
        assert response.status_code == 200
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["id"].startswith("chatcmpl-")
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert all("role" not in c["delta"] for c in mine[1:])
        assert [c["finish_reason"] for c in mine[1:]] == [None] * 3 + ["length"]
    assert all(c.get("usage") is None for c in chunks)  # not asked for


def test_streamed_completion_equals_non_streamed(server, client: openai.OpenAI):
    kwargs = dict(model=server.model, prompt=[PROMPT, "Roses are red,"], max_tokens=12,
                  temperature=0, logprobs=2)
    whole = client.completions.create(**kwargs)
    texts, tokens = {}, {}
    usage = None
    for chunk in client.completions.create(**kwargs, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            tokens[c.index] = tokens.get(c.index, []) + c.logprobs.tokens
    for c in whole.choices:
        assert texts[c.index] == c.text
        assert tokens[c.index] == c.logprobs.tokens
    assert usage == whole.usage


def test_streamed_chat_equals_non_streamed(server, client: openai.OpenAI):
    kwargs = dict(model=server.model, messages=MESSAGES, max_tokens=12, temperature=0)
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(**kwargs, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == whole.choices[0].finish_reason


def test_streamed_echo(server, client: openai.OpenAI):
    stream = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=4,
                                       temperature=0, echo=True, stream=True)
    whole = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=4,
                                      temperature=0, echo=True)
    assert "".join(c.choices[0].text for c in stream) == whole.choices[0].text


def test_disconnect_mid_stream_aborts_and_frees_blocks(server):
    before = server.wait_idle()
    with server.http() as http, http.stream("POST", "/v1/completions", json={
            "prompt": PROMPT, "max_tokens": 400, "stream": True, "ignore_eos": True}) as r:
        lines = r.iter_lines()
        for _ in range(3):  # the stream has started: three tokens arrived
            assert next(line for line in lines if line).startswith("data: {")
        assert server.metrics()["minivllm:num_requests_running"] == 1
    after = server.wait_idle()  # the connection is closed
    assert after["minivllm:num_requests_running"] == 0
    assert after["minivllm:kv_cache_usage_perc"] == 0
    generated = after["minivllm:generation_tokens_total"]
    assert generated - before["minivllm:generation_tokens_total"] < 400
    time.sleep(0.5)
    assert server.metrics()["minivllm:generation_tokens_total"] == generated  # really stopped


def test_disconnect_while_waiting_for_a_non_streamed_response(server):
    before = server.wait_idle()
    with server.http() as http:
        try:
            http.post("/v1/chat/completions", timeout=1.5, json={
                "messages": MESSAGES, "max_tokens": 400, "ignore_eos": True})
            raise AssertionError("400 tokens on a CPU should take longer than 1.5 s")
        except httpx.ReadTimeout:
            pass  # the client gives up and closes the connection
    after = server.wait_idle()
    assert after["minivllm:num_requests_running"] == 0
    assert after["minivllm:kv_cache_usage_perc"] == 0
    assert after["minivllm:generation_tokens_total"] \
        - before["minivllm:generation_tokens_total"] < 400


def test_three_times_max_num_seqs_concurrent_requests(server):
    num = 3 * server.max_num_seqs

    async def one(client: openai.AsyncOpenAI, i: int) -> str:
        if i % 2:
            stream = await client.chat.completions.create(
                model=server.model, messages=[{"role": "user", "content": f"Count to {i}"}],
                max_tokens=6, stream=True, extra_body={"ignore_eos": True})
            return "".join([c.choices[0].delta.content or "" async for c in stream])
        response = await client.completions.create(
            model=server.model, prompt=f"{i} plus {i} is", max_tokens=6,
            extra_body={"ignore_eos": True})
        assert response.usage.completion_tokens == 6
        return response.choices[0].text

    async def run() -> list[str]:
        client = server.async_openai()
        try:
            return await asyncio.gather(*(one(client, i) for i in range(num)))
        finally:
            await client.close()

    texts = asyncio.run(run())
    assert len(texts) == num and all(texts)
    assert server.wait_idle()["minivllm:num_requests_running"] == 0


def test_bad_requests_do_not_disturb_a_running_one(server, client: openai.OpenAI):
    expected = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=24,
                                         temperature=0).choices[0].text

    async def run() -> str:
        async with server.async_http(timeout=60) as http:
            async def good() -> str:
                text = ""
                async with http.stream("POST", "/v1/completions", json={
                        "prompt": PROMPT, "max_tokens": 24, "temperature": 0,
                        "stream": True}) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            text += json.loads(line[6:])["choices"][0]["text"]
                return text

            async def bad() -> list[int]:
                await asyncio.sleep(0.2)
                bodies = [b"{not json", b'{"prompt": "x", "temperature": -1}',
                          b'{"prompt": "x", "n": 0}', b'{"prompt": [10000000]}',
                          b'{"prompt": "x", "max_tokens": 100000}']
                responses = [await http.post("/v1/completions", content=body,
                                             headers={"Content-Type": "application/json"})
                             for body in bodies]
                return [r.status_code for r in responses]

            text, codes = await asyncio.gather(good(), bad())
            assert codes == [400] * 5
            return text

    assert asyncio.run(run()) == expected
