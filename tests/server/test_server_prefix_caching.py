"""`--enable-prefix-caching` on the server: `/metrics` reports the prefix cache's queries and
hits in tokens (vLLM v1's `prefix_cache_queries_total` and `prefix_cache_hits_total`), so an
operator reads the hit rate as hits / queries.

A random tiny model with its byte-level tokenizer (one token per byte) starts in seconds and
makes the arithmetic exact: a 64-byte prompt is 4 full blocks of 16 tokens.
"""

import pytest
from server_utils import Server, start_server

from minivllm.server.remote import stop_server

BLOCK_SIZE = 16


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    log = tmp_path_factory.mktemp("prefix") / "server.log"
    proc, url = start_server(["--model", "random:tiny-llama", "--served-model-name", "tiny",
                              "--max-model-len", "256", "--block-size", str(BLOCK_SIZE),
                              "--enable-prefix-caching"], log)
    yield Server(url, None, log, model="tiny", max_model_len=256)
    stop_server(proc)


def test_metrics_count_prefix_cache_queries_and_hits(cached):
    prompt = "0123456789abcdef" * 4  # 64 tokens: 4 full blocks
    with cached.http() as http:
        tokens = http.post("/tokenize", json={"prompt": prompt}).json()["tokens"]
        body = {"model": "tiny", "prompt": prompt, "max_tokens": 2, "temperature": 0}
        before = cached.wait_idle()
        first = http.post("/v1/completions", json=body)
        middle = cached.wait_idle()
        second = http.post("/v1/completions", json=body)
        after = cached.wait_idle()
    assert first.status_code == second.status_code == 200
    assert second.json()["choices"][0]["text"] == first.json()["choices"][0]["text"]

    def delta(a: dict, b: dict, name: str) -> float:
        return b[f"minivllm:{name}_total"] - a.get(f"minivllm:{name}_total", 0.0)

    assert delta(before, middle, "prefix_cache_queries") == len(tokens)
    assert delta(before, middle, "prefix_cache_hits") == 0
    assert delta(middle, after, "prefix_cache_queries") == len(tokens)
    # Every full block is found, except that the last prompt token is always computed.
    full_blocks = (len(tokens) - 1) // BLOCK_SIZE
    assert delta(middle, after, "prefix_cache_hits") == full_blocks * BLOCK_SIZE
    assert after["minivllm:kv_cache_usage_perc"] == 0  # cached blocks count as free
