"""`POST /v1/completions` through the official `openai` client, as vLLM serves it."""

import httpx
import openai
import pytest

PROMPT = "The capital of France is"


def greedy(client: openai.OpenAI, model: str, prompt, **kwargs):
    return client.completions.create(model=model, prompt=prompt, temperature=0, **kwargs)


def test_response_object(server, client: openai.OpenAI):
    response = greedy(client, server.model, PROMPT, max_tokens=8)
    assert response.id.startswith("cmpl-")
    assert response.object == "text_completion"
    assert response.model == server.model
    [choice] = response.choices
    assert choice.index == 0
    assert choice.text
    assert choice.finish_reason in ("stop", "length")
    assert choice.logprobs is None


def test_greedy_is_deterministic(server, client: openai.OpenAI):
    first = greedy(client, server.model, PROMPT, max_tokens=10).choices[0].text
    assert greedy(client, server.model, PROMPT, max_tokens=10).choices[0].text == first


def test_max_tokens_defaults_to_16(server, client: openai.OpenAI):
    response = greedy(client, server.model, PROMPT, extra_body={"ignore_eos": True})
    assert response.usage.completion_tokens == 16
    assert response.choices[0].finish_reason == "length"


def test_max_tokens_none_fills_up_to_max_model_len(server, client: openai.OpenAI, http):
    prompt = [1000 + i % 100 for i in range(server.max_model_len - 6)]
    response = http.post("/v1/completions", json={
        "prompt": prompt, "max_tokens": None, "ignore_eos": True, "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["usage"]["completion_tokens"] == 6
    assert body["choices"][0]["finish_reason"] == "length"


def test_usage_arithmetic_with_n_and_a_batch_of_prompts(server, client: openai.OpenAI, http):
    prompts = ["Once upon a time", "The quick brown fox jumps"]
    counts = [http.post("/tokenize", json={"prompt": p}).json()["count"] for p in prompts]
    response = client.completions.create(
        model=server.model, prompt=prompts, n=2, max_tokens=5, temperature=0.8, seed=1,
        extra_body={"ignore_eos": True})
    assert sorted(c.index for c in response.choices) == [0, 1, 2, 3]
    assert all(c.finish_reason == "length" for c in response.choices)
    assert response.usage.prompt_tokens == sum(counts)
    assert response.usage.completion_tokens == 2 * 2 * 5
    assert response.usage.total_tokens == sum(counts) + 20


def test_batch_choices_follow_prompt_order(server, client: openai.OpenAI):
    prompts = ["One, two, three,", "Monday, Tuesday,"]
    alone = [greedy(client, server.model, p, max_tokens=6).choices[0].text for p in prompts]
    batch = greedy(client, server.model, prompts, max_tokens=6)
    texts = {c.index: c.text for c in batch.choices}
    assert [texts[0], texts[1]] == alone


def test_token_id_prompts(server, client: openai.OpenAI, http):
    ids = http.post("/tokenize", json={"prompt": PROMPT}).json()["tokens"]
    by_text = greedy(client, server.model, PROMPT, max_tokens=8)
    by_ids = greedy(client, server.model, ids, max_tokens=8)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids)
    batch = greedy(client, server.model, [ids, ids], max_tokens=8)
    assert [c.text for c in batch.choices] == [by_text.choices[0].text] * 2


def test_seed_makes_sampling_reproducible(server, client: openai.OpenAI):
    def sample():
        return [c.text for c in client.completions.create(
            model=server.model, prompt=PROMPT, max_tokens=8, temperature=1.0, n=2,
            seed=1234).choices]
    assert sample() == sample()


def test_echo(server, client: openai.OpenAI):
    plain = greedy(client, server.model, PROMPT, max_tokens=5).choices[0].text
    echoed = greedy(client, server.model, PROMPT, max_tokens=5, echo=True).choices[0].text
    assert echoed == PROMPT + plain


def test_stop_string(server, client: openai.OpenAI):
    text = greedy(client, server.model, PROMPT, max_tokens=16,
                  extra_body={"ignore_eos": True}).choices[0].text
    word = text.split()[2]
    stopped = greedy(client, server.model, PROMPT, max_tokens=16, stop=[word],
                     extra_body={"ignore_eos": True}).choices[0]
    assert stopped.finish_reason == "stop"
    assert stopped.model_extra["stop_reason"] == word
    assert stopped.text == text[:text.index(word)]


def test_logprobs(server, client: openai.OpenAI):
    choice = greedy(client, server.model, PROMPT, max_tokens=6, logprobs=3).choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == choice.text
    offsets = [0]
    for token in lp.tokens[:-1]:
        offsets.append(offsets[-1] + len(token))
    assert lp.text_offset == offsets
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert logprob <= 0
        assert 3 <= len(top) <= 4 and token in top
        assert logprob == pytest.approx(max(top.values()))  # greedy picks the most likely


@pytest.mark.parametrize("extra", [
    {"top_k": 5, "top_p": 0.9, "min_p": 0.05},
    {"presence_penalty": 0.5, "frequency_penalty": 0.5, "repetition_penalty": 1.2},
    {"min_tokens": 4, "stop_token_ids": [2]},
])
def test_sampling_parameters_are_accepted(server, http: httpx.Client, extra):
    response = http.post("/v1/completions", json={
        "prompt": PROMPT, "max_tokens": 4, "temperature": 0.7, "seed": 3, **extra})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] >= 1


def test_min_tokens_delays_the_end(server, client: openai.OpenAI):
    response = client.completions.create(
        model=server.model, prompt="Say nothing.", max_tokens=12, temperature=0,
        extra_body={"min_tokens": 12})
    assert response.usage.completion_tokens == 12


def test_unknown_fields_are_ignored(server, http: httpx.Client):
    response = http.post("/v1/completions", json={
        "prompt": PROMPT, "max_tokens": 2, "user": "me", "no_such_field": [1, 2],
        "best_of": 1, "logit_bias": {}})
    assert response.status_code == 200, response.text
