"""The routes other than generation: health, version, models, metrics, tokenize, detokenize."""

import httpx
import openai
import pytest

import minivllm


def test_health_and_version_are_open(server):
    assert httpx.get(f"{server.url}/health").status_code == 200
    response = httpx.get(f"{server.url}/version")
    assert response.status_code == 200
    assert response.json() == {"version": minivllm.__version__}


def test_models_lists_every_served_name_with_max_model_len(server, client: openai.OpenAI):
    models = client.models.list().data
    assert [m.id for m in models] == [server.model, server.alias]
    for m in models:
        assert m.object == "model"
        assert m.owned_by == "minivllm"
        assert m.model_extra["max_model_len"] == server.max_model_len


def test_retrieve_model(server, client: openai.OpenAI):
    assert client.models.retrieve(server.alias).id == server.alias
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("gpt-4")
    assert e.value.body["message"] == "The model `gpt-4` does not exist."


def test_any_served_name_works_and_is_echoed(server, client: openai.OpenAI):
    for name in (server.model, server.alias):
        response = client.completions.create(model=name, prompt="Hi", max_tokens=2)
        assert response.model == name


def test_model_may_be_left_out(server, http: httpx.Client):
    response = http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
    assert response.status_code == 200
    assert response.json()["model"] == server.model


def test_metrics_exposes_vllm_names_under_minivllm_prefix(server):
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = server.metrics()
    for name in ["num_requests_running", "num_requests_waiting", "kv_cache_usage_perc",
                 "num_preemptions_total", "prompt_tokens_total", "generation_tokens_total",
                 "request_success_total", "time_to_first_token_seconds_count",
                 "inter_token_latency_seconds_count", "e2e_request_latency_seconds_count",
                 "cache_config_info"]:
        assert f"minivllm:{name}" in names, name
    assert f'model_name="{server.model}"' in response.text


def test_metrics_count_a_request(server, client: openai.OpenAI):
    before = server.wait_idle()
    response = client.completions.create(model=server.model, prompt="The sky is", max_tokens=5,
                                         extra_body={"ignore_eos": True})
    after = server.wait_idle()
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    assert delta["minivllm:prompt_tokens_total"] == response.usage.prompt_tokens
    assert delta["minivllm:generation_tokens_total"] == 5
    assert delta["minivllm:time_to_first_token_seconds_count"] == 1
    assert delta["minivllm:inter_token_latency_seconds_count"] == 4
    assert delta["minivllm:e2e_request_latency_seconds_count"] == 1
    assert delta["minivllm:request_success_total"] == 1


def test_tokenize_and_detokenize_round_trip(server, http: httpx.Client):
    response = http.post("/tokenize", json={"prompt": "Hello world", "return_token_strs": True})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(body["tokens"]) > 0
    assert body["max_model_len"] == server.max_model_len
    assert "".join(body["token_strs"]).replace("Ġ", " ") == "Hello world"
    back = http.post("/detokenize", json={"tokens": body["tokens"]})
    assert back.json() == {"prompt": "Hello world"}


def test_tokenize_messages_applies_the_chat_template(http: httpx.Client):
    messages = [{"role": "user", "content": "Hi there"}]
    body = http.post("/tokenize", json={"messages": messages}).json()
    text = http.post("/detokenize", json={"tokens": body["tokens"]}).json()["prompt"]
    assert "Hi there" in text and text.endswith("assistant\n")  # SmolLM2's ChatML template
    bare = http.post("/tokenize", json={"messages": messages,
                                        "add_generation_prompt": False}).json()
    assert bare["count"] < body["count"]


def test_detokenize_rejects_unknown_token_ids(http: httpx.Client):
    response = http.post("/detokenize", json={"tokens": [1, 10**9]})
    assert response.status_code == 400
    assert "out of vocabulary" in response.json()["error"]["message"]
