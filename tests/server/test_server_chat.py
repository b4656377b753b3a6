"""`POST /v1/chat/completions` through the official `openai` client."""

import httpx
import openai

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


def test_response_object(server, client: openai.OpenAI):
    response = client.chat.completions.create(
        model=server.model, messages=MESSAGES, max_tokens=8, temperature=0)
    assert response.id.startswith("chatcmpl-")
    assert response.object == "chat.completion"
    assert response.model == server.model
    [choice] = response.choices
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.total_tokens == (response.usage.prompt_tokens
                                           + response.usage.completion_tokens)


def test_prompt_tokens_are_the_templated_conversation(server, client: openai.OpenAI, http):
    count = http.post("/tokenize", json={"messages": MESSAGES}).json()["count"]
    response = client.chat.completions.create(model=server.model, messages=MESSAGES,
                                              max_tokens=2)
    assert response.usage.prompt_tokens == count


def test_max_completion_tokens_and_max_tokens(server, client: openai.OpenAI):
    for kwargs in ({"max_completion_tokens": 3}, {"max_tokens": 3}):
        response = client.chat.completions.create(
            model=server.model, messages=MESSAGES, extra_body={"ignore_eos": True}, **kwargs)
        assert response.usage.completion_tokens == 3
        assert response.choices[0].finish_reason == "length"


def test_max_tokens_defaults_to_the_rest_of_the_context(server, client: openai.OpenAI, http):
    messages = [{"role": "user", "content": "hello " * 200}]
    count = http.post("/tokenize", json={"messages": messages}).json()["count"]
    pad = server.max_model_len - count - 5  # leave exactly 5 tokens to generate
    messages[0]["content"] += "hello " * pad
    assert http.post("/tokenize", json={"messages": messages}).json()["count"] \
        == server.max_model_len - 5
    response = client.chat.completions.create(
        model=server.model, messages=messages, temperature=0,
        extra_body={"ignore_eos": True})
    assert response.usage.completion_tokens == 5
    assert response.choices[0].finish_reason == "length"


def test_n_choices(server, client: openai.OpenAI):
    response = client.chat.completions.create(
        model=server.model, messages=MESSAGES, n=3, max_tokens=4, temperature=1.0, seed=7,
        extra_body={"ignore_eos": True})
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert response.usage.completion_tokens == 12


def test_logprobs_and_top_logprobs(server, client: openai.OpenAI):
    choice = client.chat.completions.create(
        model=server.model, messages=MESSAGES, max_tokens=5, temperature=0, logprobs=True,
        top_logprobs=3).choices[0]
    content = choice.logprobs.content
    assert "".join(c.token for c in content) == choice.message.content
    for c in content:
        assert c.logprob <= 0
        assert c.bytes == list(c.token.encode())
        assert len(c.top_logprobs) == 3
        values = [t.logprob for t in c.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert c.top_logprobs[0].token == c.token  # greedy takes the most likely
    only_sampled = client.chat.completions.create(
        model=server.model, messages=MESSAGES, max_tokens=3, logprobs=True).choices[0]
    assert all(c.top_logprobs == [] for c in only_sampled.logprobs.content)


def test_content_parts_are_joined(server, client: openai.OpenAI):
    as_text = client.chat.completions.create(
        model=server.model, max_tokens=6, temperature=0,
        messages=[{"role": "user", "content": "Hello\nworld"}])
    as_parts = client.chat.completions.create(
        model=server.model, max_tokens=6, temperature=0,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hello"},
                                               {"type": "text", "text": "world"}]}])
    assert as_parts.choices[0].message.content == as_text.choices[0].message.content
    assert as_parts.usage.prompt_tokens == as_text.usage.prompt_tokens


def test_echo_continues_the_last_message(server, http: httpx.Client):
    messages = [*MESSAGES, {"role": "assistant", "content": "The capital of France is"}]
    body = http.post("/v1/chat/completions", json={
        "messages": messages, "max_tokens": 4, "temperature": 0, "echo": True,
        "add_generation_prompt": False, "continue_final_message": True}).json()
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message["content"].startswith("The capital of France is")
    assert len(message["content"]) > len("The capital of France is")


def test_chat_template_kwargs_reach_the_template(server, http: httpx.Client):
    # An unused variable is harmless; a reserved name cannot override the call.
    response = http.post("/v1/chat/completions", json={
        "messages": MESSAGES, "max_tokens": 2,
        "chat_template_kwargs": {"enable_thinking": False, "tokenize": True}})
    assert response.status_code == 200, response.text


def test_stop(server, client: openai.OpenAI):
    full = client.chat.completions.create(
        model=server.model, messages=MESSAGES, max_tokens=16, temperature=0,
        extra_body={"ignore_eos": True}).choices[0].message.content
    word = full.split()[1]
    stopped = client.chat.completions.create(
        model=server.model, messages=MESSAGES, max_tokens=16, temperature=0, stop=word,
        extra_body={"ignore_eos": True}).choices[0]
    assert stopped.finish_reason == "stop"
    assert stopped.message.content == full[:full.index(word)]
