"""A second server with a KV cache smaller than the context and its own chat template.

8 blocks of 16 tokens hold 128 tokens while `max_model_len` is 512, so a request can be within
the context and still never fit the cache: the server refuses it with a 400 before a stream
starts, as the engine would. Several long requests at once must preempt.
"""

import asyncio

import pytest
from server_utils import Server, start_server

from minivllm.server.chat_utils import load_chat_template
from minivllm.server.remote import stop_server

TEMPLATE = ("{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<<assistant>>{% endif %}")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    template = folder / "template.jinja"
    template.write_text(TEMPLATE)
    proc, url = start_server(["--max-model-len", "512", "--num-gpu-blocks-override", "8",
                              "--chat-template", str(template), "--served-model-name", "tiny"],
                             folder / "server.log")
    yield Server(url, None, folder / "server.log", model="tiny", max_model_len=512)
    stop_server(proc)


def test_chat_template_flag_replaces_the_tokenizers(small):
    with small.http() as http:
        messages = [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"}]
        tokens = http.post("/tokenize", json={"messages": messages}).json()["tokens"]
        text = http.post("/detokenize", json={"tokens": tokens}).json()["prompt"]
        assert text == "<<system>>Be brief.\n<<user>>Hi\n<<assistant>>"
        response = http.post("/v1/chat/completions", json={"messages": messages,
                                                           "max_tokens": 2})
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["prompt_tokens"] == len(tokens)


def test_inline_and_file_chat_templates(tmp_path):
    assert load_chat_template(None) is None
    path = tmp_path / "t.jinja"
    path.write_text(TEMPLATE)
    assert load_chat_template(str(path)) == TEMPLATE
    assert load_chat_template("{{ messages[0]['content'] }}\\n") == \
        "{{ messages[0]['content'] }}\n"
    with pytest.raises(ValueError, match="looks like a file path"):
        load_chat_template(str(tmp_path / "missing.jinja"))


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("route", ["/v1/completions", "/v1/chat/completions"])
def test_request_that_could_never_fit_the_cache_is_400_before_any_stream(small, route, stream):
    body = {"max_tokens": 400, "stream": stream}
    body |= ({"prompt": "Hello"} if route == "/v1/completions"
             else {"messages": [{"role": "user", "content": "Hello"}]})
    with small.http() as http:
        response = http.post(route, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "BadRequestError" and error["param"] == "max_tokens"
    assert "could never run" in error["message"]


def test_requests_that_outgrow_the_cache_are_preempted_and_all_finish(small):
    before = small.wait_idle()

    async def run() -> list[dict]:
        async with small.async_http(timeout=300) as http:
            responses = await asyncio.gather(*(http.post("/v1/completions", json={
                "prompt": f"Story number {i}:", "max_tokens": 48, "ignore_eos": True})
                for i in range(4)))
        return [r.json() for r in responses]

    bodies = asyncio.run(run())
    assert all(b["usage"]["completion_tokens"] == 48 for b in bodies), bodies
    after = small.wait_idle()
    assert after["minivllm:num_preemptions_total"] > before["minivllm:num_preemptions_total"]
    assert after["minivllm:kv_cache_usage_perc"] == 0
