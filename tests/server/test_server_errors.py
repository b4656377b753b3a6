"""Errors come in OpenAI's envelope with vLLM's status codes, and never take the server down."""

from dataclasses import replace

import httpx
import openai
import pytest


def assert_error(response: httpx.Response, status: int, type_: str, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    assert error["code"] == status
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


@pytest.mark.parametrize(("route", "body", "fragment"), [
    ("/v1/completions", {"prompt": "x", "temperature": -1}, "temperature must be non-negative"),
    ("/v1/completions", {"prompt": "x", "top_p": 1.5}, "top_p must be in (0, 1]"),
    ("/v1/completions", {"prompt": "x", "n": 0}, "n must be at least 1"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 0}, "max_tokens must be at least 1"),
    ("/v1/completions", {"prompt": "x", "top_k": -5}, "top_k must be 0"),
    ("/v1/completions", {"prompt": "x", "presence_penalty": 3}, "presence_penalty"),
    ("/v1/completions", {"prompt": "x", "logprobs": 21}, "`logprobs` must be between 0 and 20"),
    ("/v1/completions", {"prompt": "x", "stop": [""]}, "stop cannot contain an empty string"),
    ("/v1/completions", {"prompt": ""}, "The decoder prompt cannot be empty"),
    ("/v1/completions", {"prompt": [1, 99999999]}, "Token id 99999999 is out of vocabulary"),
    ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}},
     "Stream options can only be defined when `stream=True`."),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                              "top_logprobs": 2}, "`logprobs` must be set to true"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                              "temperature": "hot"}, "temperature"),
    ("/v1/chat/completions", {"messages": []}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, "image_url"),
    ("/v1/completions", {"max_tokens": 3}, "prompt"),
])
def test_invalid_parameters_are_400(http: httpx.Client, route, body, fragment):
    assert_error(http.post(route, json=body), 400, "BadRequestError", fragment)


def test_validation_errors_name_the_param(http: httpx.Client):
    error = assert_error(http.post("/v1/completions", json={"prompt": "x", "n": "many"}),
                         400, "BadRequestError")
    assert error["param"] == "n"


def test_malformed_json_is_400(http: httpx.Client):
    response = http.post("/v1/chat/completions", content=b'{"messages": [',
                         headers={"Content-Type": "application/json"})
    assert_error(response, 400, "BadRequestError", "JSON decode error")


def test_prompt_longer_than_the_context_is_400(server, http: httpx.Client):
    prompt = [100] * (server.max_model_len + 10)
    assert_error(http.post("/v1/completions", json={"prompt": prompt}), 400,
                 "BadRequestError",
                 f"This model's maximum context length is {server.max_model_len} tokens")


def test_prompt_plus_max_tokens_longer_than_the_context_is_400(server, client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model, max_tokens=server.max_model_len,
                                       messages=[{"role": "user", "content": "Hi"}])
    message = e.value.body["message"]
    assert message.startswith(
        f"This model's maximum context length is {server.max_model_len} tokens. "
        f"However, you requested ")
    assert "in the messages" in message and "in the completion" in message


def test_streaming_request_errors_before_the_stream_starts(server, http: httpx.Client):
    response = http.post("/v1/completions", json={"prompt": "x", "stream": True,
                                                  "temperature": -1})
    assert_error(response, 400, "BadRequestError", "temperature")


def test_unknown_model_is_404(client: openai.OpenAI, http: httpx.Client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="Qwen2-7B-Instruct", prompt="x", max_tokens=2)
    assert e.value.body["message"] == "The model `Qwen2-7B-Instruct` does not exist."
    assert_error(http.post("/v1/chat/completions", json={
        "model": "nope", "messages": [{"role": "user", "content": "x"}]}), 404,
        "NotFoundError", "The model `nope` does not exist.")


def test_unknown_route_is_404_in_the_envelope(http: httpx.Client):
    assert_error(http.get("/v1/engines"), 404, "NotFoundError")


def test_api_key_guards_v1_only(server):
    body = {"prompt": "Hi", "max_tokens": 2}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": server.api_key}):
        assert_error(httpx.post(f"{server.url}/v1/completions", json=body, headers=headers),
                     401, "AuthenticationError", "Unauthorized")
        assert_error(httpx.get(f"{server.url}/v1/models", headers=headers), 401,
                     "AuthenticationError")
    ok = httpx.post(f"{server.url}/v1/completions", json=body, headers=server.headers(),
                    timeout=60)
    assert ok.status_code == 200
    for open_route in ("/health", "/metrics", "/version"):
        assert httpx.get(f"{server.url}{open_route}").status_code == 200


def test_openai_client_with_a_wrong_key(server):
    bad = replace(server, api_key="wrong").openai()
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_server_still_serves_after_errors(server, client: openai.OpenAI):
    assert httpx.get(f"{server.url}/health").status_code == 200
    response = client.completions.create(model=server.model, prompt="Hi", max_tokens=2)
    assert response.choices[0].text
