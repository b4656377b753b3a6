"""Security defaults: loopback, the API key on every /v1 route (compared in constant time), no
prompts or outputs in the log unless asked, CORS off unless asked, documented request limits."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute

from benchmarks.reliability.harness import API_KEY, LiveServer
from minivllm.server import api_server
from minivllm.server.api_server import AuthenticationMiddleware, router
from minivllm.server.cli_args import make_arg_parser, parse_args


def test_default_host_is_loopback(plain_server: LiveServer):
    assert parse_args([]).host == "127.0.0.1"
    assert urlsplit(plain_server.url).hostname == "127.0.0.1"  # started without --host


def _v1_routes() -> list[tuple[str, str]]:
    routes = [(method, route.path.replace("{model_name:path}", "tiny"))
              for route in router.routes if isinstance(route, APIRoute)
              and route.path.startswith("/v1") for method in route.methods]
    return [*routes, ("GET", "/v1/no-such-route"), ("POST", "/v1/embeddings")]


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer wrong", f"Bearer {API_KEY[:-1]}",
    f"Bearer {API_KEY}x", f"bearer {API_KEY}", API_KEY, f"Basic {API_KEY}",
    f"Bearer {'x' * len(API_KEY)}"])
def test_every_v1_route_needs_the_key(fuzz_server: LiveServer, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in _v1_routes():
        response = httpx.request(method, f"{fuzz_server.url}{path}", headers=headers,
                                 json={}, timeout=10)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["type"] == "AuthenticationError"


def test_the_right_key_opens_every_v1_route(fuzz_server: LiveServer):
    for method, path in _v1_routes():
        response = httpx.request(method, f"{fuzz_server.url}{path}",
                                 headers=fuzz_server.headers(), json={}, timeout=10)
        assert response.status_code != 401, (method, path)


def test_the_key_is_compared_in_constant_time(monkeypatch):
    """Whatever the header, `compare_digest` sees two SHA-256 digests: the same length, so the
    time taken says nothing about how close a guess was, or how long the key is."""
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(api_server.secrets, "compare_digest", spy)
    passed: list[str] = []

    async def app(scope, receive, send) -> None:
        passed.append(scope["path"])

    async def call(authorization: str) -> None:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/v1/models",
                 "headers": [(b"authorization", authorization.encode())]}
        await AuthenticationMiddleware(app, "s3cret")(scope, None, send)

    for header in ["Bearer s3cret", "Bearer s", "Bearer s3cres", "x" * 1000, ""]:
        asyncio.run(call(header))
    assert passed == ["/v1/models"]  # only the right key got through
    assert len(calls) == 5
    expected = hashlib.sha256(b"Bearer s3cret").digest()
    assert all(len(a) == len(b) == 32 and b == expected for a, b in calls)


def _marker() -> str:
    return f"private-{uuid.uuid4().hex}"


def test_prompts_and_outputs_are_not_logged_by_default(plain_server: LiveServer):
    marker = _marker()
    text = plain_server.completion(marker, 16, ignore_eos=True)["choices"][0]["text"]
    with plain_server.http() as http:
        chat = http.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": marker}], "max_tokens": 16})
    log = plain_server.log_text()
    assert marker not in log
    for output in (text, chat.json()["choices"][0]["message"]["content"]):
        assert len(output) < 8 or output not in log
    assert "Received request" not in log and "Generated response" not in log


def test_enable_log_requests_logs_clipped_prompts_and_outputs(fuzz_server: LiveServer):
    prompt = _marker() + "-tail" * 12
    fuzz_server.completion(prompt, 4)
    log = fuzz_server.log_text()
    assert f"prompt: {prompt[:64]!r}" in log  # clipped: --max-log-len 64
    assert "Generated response" in log


def _preflight(server: LiveServer, origin: str) -> httpx.Response:
    return httpx.options(f"{server.url}/v1/chat/completions", timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})


def test_cors_is_off_unless_allowed_origins_is_given(plain_server: LiveServer):
    assert "access-control-allow-origin" not in _preflight(plain_server, "http://a.example").headers
    response = httpx.get(f"{plain_server.url}/v1/models", headers={"Origin": "http://a.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_allowed_origins_only(fuzz_server: LiveServer):
    allowed = _preflight(fuzz_server, "http://allowed.example")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://allowed.example"
    other = _preflight(fuzz_server, "http://evil.example")
    assert "access-control-allow-origin" not in other.headers
    # CORS is the outermost layer: a browser can read a 401 too, from an allowed origin only.
    unauthorized = httpx.get(f"{fuzz_server.url}/v1/models",
                             headers={"Origin": "http://allowed.example"})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == "http://allowed.example"


def test_fastapi_docs_can_be_turned_off(plain_server: LiveServer, fuzz_server: LiveServer):
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert httpx.get(f"{plain_server.url}{path}").status_code == 404
    assert httpx.get(f"{fuzz_server.url}/openapi.json").status_code == 200


def test_limits_and_security_flags_are_documented(capsys):
    with pytest.raises(SystemExit):
        make_arg_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ["--max-request-body-bytes", "--max-n-sequences", "--max-stop-sequences",
                 "--api-key", "--allowed-origins", "--allowed-methods", "--allowed-headers",
                 "--allow-credentials", "--enable-log-requests", "--enable-log-outputs",
                 "--max-log-len", "--disable-fastapi-docs"]:
        assert flag in out, flag


def test_allowed_origins_take_vllms_json_lists_too():
    args = parse_args(["--allowed-origins", '["http://a.example", "http://b.example"]',
                       "http://c.example"])
    assert args.allowed_origins == ["http://a.example", "http://b.example", "http://c.example"]
    assert parse_args([]).allowed_origins is None
