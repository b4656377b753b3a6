"""The FastAPI app, its routes, and how the server starts (vLLM's
`vllm/entrypoints/openai/api_server.py`).

Start-up follows the order the course chapter lists: parse the flags, bind the port (first, so
a busy port fails in a second rather than after the model has loaded), load tokenizer and
weights and size the KV cache (`LLMEngine`, which logs each step), build the app, start the
engine loop (in the app's lifespan) and serve with uvicorn. The model is loaded once; every
request shares the one engine.

Around the routes sit three ASGI middlewares, outermost first: CORS (only with
`--allowed-origins`), the API key (`--api-key`, on `/v1/*`), and the body-size limit
(`--max-request-body-bytes`, in `limits.py`). If the engine loop dies, the server shuts itself
down (unless MINIVLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1) and `python -m minivllm.server` exits
with status 1, so a supervisor restarts it instead of a dead server answering 500 forever.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from minivllm import __version__
from minivllm.engine.async_llm_engine import AsyncLLMEngine
from minivllm.engine.llm_engine import LLMEngine
from minivllm.server.chat_utils import load_chat_template
from minivllm.server.cli_args import engine_config_from_args, non_default_args
from minivllm.server.errors import OpenAIError, install_exception_handlers
from minivllm.server.limits import RequestBodyLimitMiddleware, RequestLimits
from minivllm.server.metrics import PrometheusStatLogger
from minivllm.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from minivllm.server.request_logger import RequestLogger
from minivllm.server.serving_chat import OpenAIServingChat
from minivllm.server.serving_completion import OpenAIServingCompletion
from minivllm.server.serving_models import OpenAIServingModels
from minivllm.server.serving_tokenization import OpenAIServingTokenization
from minivllm.server.utils import with_cancellation

logger = logging.getLogger("minivllm")

KEEP_ALIVE_ON_ENGINE_DEATH_ENV = "MINIVLLM_KEEP_ALIVE_ON_ENGINE_DEATH"
"""Set to 1 to keep serving (503 on /health, 500 on generation) after the engine loop died,
to look at the server in that state (vLLM: VLLM_KEEP_ALIVE_ON_ENGINE_DEATH)."""

SHUTDOWN_GRACE_S = 5
"""On shutdown (Ctrl-C, or the engine died), how long in-flight requests get to finish."""

router = APIRouter()


@dataclass
class ServerState:
    """What the route handlers need, kept on `app.state.server`."""
    engine: AsyncLLMEngine
    models: OpenAIServingModels
    completion: OpenAIServingCompletion
    chat: OpenAIServingChat
    tokenization: OpenAIServingTokenization
    registry: CollectorRegistry
    limits: RequestLimits


def state(request: Request) -> ServerState:
    return request.app.state.server


def respond(result: BaseModel | AsyncIterator[str]) -> Response:
    """A finished response as JSON, a stream as Server-Sent Events."""
    if isinstance(result, BaseModel):
        return JSONResponse(result.model_dump())
    return StreamingResponse(result, media_type="text/event-stream")


# -- routes ----------------------------------------------------------------------------------
@router.get("/health")
async def health(raw_request: Request) -> Response:
    """200 while the engine loop is alive (load balancers and tests poll this)."""
    ok = state(raw_request).engine.dead_error is None
    return Response(status_code=HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE)


@router.get("/version")
async def show_version() -> JSONResponse:
    return JSONResponse({"version": __version__})


@router.get("/metrics")
async def metrics(raw_request: Request) -> Response:
    return Response(generate_latest(state(raw_request).registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models")
async def show_available_models(raw_request: Request) -> Response:
    return respond(state(raw_request).models.show_available_models())


@router.get("/v1/models/{model_name:path}")
async def retrieve_model(model_name: str, raw_request: Request) -> Response:
    return respond(state(raw_request).models.model_card(model_name))


@router.post("/v1/completions")
@with_cancellation
async def create_completion(request: CompletionRequest, raw_request: Request) -> Response:
    server = state(raw_request)
    server.engine.check_health()
    server.limits.check(request)
    return respond(await server.completion.create_completion(request))


@router.post("/v1/chat/completions")
@with_cancellation
async def create_chat_completion(request: ChatCompletionRequest,
                                 raw_request: Request) -> Response:
    server = state(raw_request)
    server.engine.check_health()
    server.limits.check(request)
    return respond(await server.chat.create_chat_completion(request))


@router.post("/tokenize")
async def tokenize(request: TokenizeRequest, raw_request: Request) -> Response:
    return respond(state(raw_request).tokenization.create_tokenize(request))


@router.post("/detokenize")
async def detokenize(request: DetokenizeRequest, raw_request: Request) -> Response:
    return respond(state(raw_request).tokenization.create_detokenize(request))


# -- the app -----------------------------------------------------------------------------------
class AuthenticationMiddleware:
    """`--api-key`: every `/v1/*` request must carry `Authorization: Bearer <key>`.

    A plain ASGI middleware (as in vLLM) rather than `@app.middleware("http")`, which would wrap
    streaming responses. A plain `==` returns at the first differing byte, so its timing tells
    an attacker how much of a guess was right; `secrets.compare_digest` takes the same time
    whatever the mismatch. Comparing SHA-256 digests, as vLLM does, hides the key's length
    too. `/health`, `/metrics` and the other routes outside `/v1` stay open; OPTIONS passes, so
    that CORS preflight requests (which never carry credentials) can be answered.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected_digest = hashlib.sha256(f"Bearer {api_key}".encode()).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a /v1 HTTP request without `Authorization: Bearer <key>` with a 401 in the
        error envelope (compare the header's SHA-256 digest with `expected_digest`, in constant
        time); pass everything else to the app."""
        # BEGIN SOLUTION lab4
        if (scope["type"] == "http" and scope["method"] != "OPTIONS"
                and scope["path"].startswith("/v1")):
            given = Headers(scope=scope).get("authorization", "").encode()
            if not secrets.compare_digest(hashlib.sha256(given).digest(), self.expected_digest):
                response = OpenAIError("Unauthorized", HTTPStatus.UNAUTHORIZED).to_json_response()
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
        # END SOLUTION


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = app.state.server.engine
    engine.start()
    yield
    engine.shutdown()


def build_app(args: argparse.Namespace, engine: AsyncLLMEngine, registry: CollectorRegistry,
              chat_template: str | None = None) -> FastAPI:
    docs = {} if not args.disable_fastapi_docs else {
        "openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(title="minivllm", version=__version__, lifespan=lifespan, **docs)
    app.include_router(router)
    install_exception_handlers(app)
    # add_middleware wraps what is there: the last one added runs first.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_bytes=args.max_request_body_bytes)
    if args.api_key:
        app.add_middleware(AuthenticationMiddleware, api_key=args.api_key)
    if args.allowed_origins:  # outermost, so that 401s and 413s carry the CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=args.allowed_origins,
                           allow_credentials=args.allow_credentials,
                           allow_methods=args.allowed_methods,
                           allow_headers=args.allowed_headers)

    models = OpenAIServingModels(args.served_model_name, args.model, engine.config.max_model_len)
    app.state.server = ServerState(
        engine=engine, models=models,
        completion=OpenAIServingCompletion(engine, models),
        chat=OpenAIServingChat(engine, models, chat_template, args.response_role),
        tokenization=OpenAIServingTokenization(engine, models, chat_template),
        registry=registry,
        limits=RequestLimits(args.max_n_sequences, args.max_stop_sequences))
    return app


def create_server_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def build_server(args: argparse.Namespace
                 ) -> tuple[uvicorn.Server, socket.socket, AsyncLLMEngine]:
    """Everything that can fail at start-up: flags, port, model, KV cache, chat template."""
    logger.info("minivllm API server version %s", __version__)
    logger.info("non-default args: %s", non_default_args(args))
    sock = create_server_socket(args.host, args.port)
    try:
        config = engine_config_from_args(args)
        chat_template = load_chat_template(args.chat_template)  # fails before the model loads
        llm_engine = LLMEngine(config)
    except BaseException:
        sock.close()
        raise
    registry = CollectorRegistry()
    stat_logger = PrometheusStatLogger(registry, args.served_model_name[0], llm_engine.config,
                                       llm_engine.kv_cache_manager.num_blocks)
    request_logger = RequestLogger(
        llm_engine.tokenizer, max_log_len=args.max_log_len,
        log_outputs=args.enable_log_outputs) if args.enable_log_requests else None
    engine = AsyncLLMEngine(llm_engine, [stat_logger], request_logger)
    app = build_app(args, engine, registry, chat_template)

    logger.info("Available routes are:")
    for route in router.routes:
        if isinstance(route, APIRoute):
            logger.info("Route: %s, Methods: %s", route.path, ", ".join(sorted(route.methods)))
    host, port = sock.getsockname()[:2]
    logger.info("Starting minivllm API server on http://%s:%d",
                f"[{host}]" if ":" in host else host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.uvicorn_log_level,
                                           timeout_keep_alive=5,
                                           timeout_graceful_shutdown=SHUTDOWN_GRACE_S))

    def on_engine_dead(error: BaseException) -> None:
        if os.environ.get(KEEP_ALIVE_ON_ENGINE_DEATH_ENV) == "1":
            logger.error("The engine loop died (%r); serving errors until stopped "
                         "(%s=1).", error, KEEP_ALIVE_ON_ENGINE_DEATH_ENV)
            return
        logger.error("The engine loop died (%r); shutting down the API server.", error)
        server.should_exit = True

    engine.on_engine_dead = on_engine_dead
    return server, sock, engine
