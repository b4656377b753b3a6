"""The FastAPI app, its routes, and how the server starts (vLLM's
`vllm/entrypoints/openai/api_server.py`).

Start-up follows the order the course chapter lists: parse the flags, bind the port (first, so
a busy port fails in a second rather than after the model has loaded), load tokenizer and
weights and size the KV cache (`LLMEngine`, which logs each step), build the app, start the
engine loop (in the app's lifespan) and serve with uvicorn. The model is loaded once; every
request shares the one engine.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus

import uvicorn
from fastapi import APIRouter, FastAPI, Request
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
from minivllm.server.metrics import PrometheusStatLogger
from minivllm.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from minivllm.server.serving_chat import OpenAIServingChat
from minivllm.server.serving_completion import OpenAIServingCompletion
from minivllm.server.serving_models import OpenAIServingModels
from minivllm.server.serving_tokenization import OpenAIServingTokenization
from minivllm.server.utils import with_cancellation

logger = logging.getLogger("minivllm")

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
    return respond(await state(raw_request).completion.create_completion(request))


@router.post("/v1/chat/completions")
@with_cancellation
async def create_chat_completion(request: ChatCompletionRequest,
                                 raw_request: Request) -> Response:
    return respond(await state(raw_request).chat.create_chat_completion(request))


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
    streaming responses. `secrets.compare_digest` takes the same time whatever the mismatch, so
    the key cannot be guessed byte by byte from response times. `/health`, `/metrics` and the
    other routes outside `/v1` stay open.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a /v1 HTTP request without `Authorization: Bearer <key>` with a 401 in the
        error envelope (compare in constant time); pass everything else to the app."""
        # BEGIN SOLUTION lab4
        if (scope["type"] == "http" and scope["method"] != "OPTIONS"
                and scope["path"].startswith("/v1")):
            given = Headers(scope=scope).get("authorization", "").encode()
            if not secrets.compare_digest(given, self.expected):
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
    app = FastAPI(title="minivllm", version=__version__, lifespan=lifespan)
    app.include_router(router)
    install_exception_handlers(app)
    if args.api_key:
        app.add_middleware(AuthenticationMiddleware, api_key=args.api_key)

    models = OpenAIServingModels(args.served_model_name, args.model, engine.config.max_model_len)
    app.state.server = ServerState(
        engine=engine, models=models,
        completion=OpenAIServingCompletion(engine, models),
        chat=OpenAIServingChat(engine, models, chat_template, args.response_role),
        tokenization=OpenAIServingTokenization(engine, models, chat_template),
        registry=registry)
    return app


def create_server_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def build_server(args: argparse.Namespace) -> tuple[uvicorn.Server, socket.socket]:
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
    app = build_app(args, AsyncLLMEngine(llm_engine, [stat_logger]), registry, chat_template)

    logger.info("Available routes are:")
    for route in router.routes:
        if isinstance(route, APIRoute):
            logger.info("Route: %s, Methods: %s", route.path, ", ".join(sorted(route.methods)))
    host, port = sock.getsockname()[:2]
    logger.info("Starting minivllm API server on http://%s:%d",
                f"[{host}]" if ":" in host else host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.uvicorn_log_level,
                                           timeout_keep_alive=5))
    return server, sock
