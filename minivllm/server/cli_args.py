"""Command-line flags of `python -m minivllm.server`, named and defaulted as vLLM's.

vLLM builds its parser from `AsyncEngineArgs` plus the server's own flags
(`vllm/entrypoints/openai/cli_args.py`). Here the engine flags map one to one onto the fields
of `EngineConfig` (`--max-num-seqs` -> `max_num_seqs`), so `engine_config_from_args` is a loop.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import fields
from typing import NoReturn

from minivllm.config import DEFAULT_MODEL, EngineConfig

API_KEY_ENV = "MINIVLLM_API_KEY"
"""Read when `--api-key` is not given (vLLM reads VLLM_API_KEY)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line instead of a page of usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def make_arg_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m minivllm.server",
        description="minivllm's OpenAI-compatible API server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model_tag", nargs="?", default=None,
                        help="The model to serve, as in `vllm serve MODEL` (same as --model).")

    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="Host name to listen on.")
    server.add_argument("--port", type=int, default=8000, help="Port to listen on.")
    server.add_argument("--uvicorn-log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug", "trace"],
                        help="Log level for uvicorn.")
    server.add_argument("--api-key", default=None,
                        help="If given, /v1/* requests must send `Authorization: Bearer KEY`. "
                             f"Falls back to ${API_KEY_ENV}.")
    server.add_argument("--served-model-name", nargs="+", default=None,
                        help="The model name(s) requests may use; the first is the default "
                             "and labels the metrics. Defaults to --model.")
    server.add_argument("--chat-template", default=None,
                        help="Chat template as a file path or an inline Jinja string; "
                             "defaults to the tokenizer's.")
    server.add_argument("--response-role", default="assistant",
                        help="Role of the generated message when add_generation_prompt=true.")
    server.add_argument("--allowed-origins", nargs="+", default=None,
                        help="Origins a browser page may call the API from (CORS), e.g. "
                             "http://localhost:3000, or a JSON list as vLLM takes it. CORS is "
                             "off unless given (vLLM allows every origin by default).")
    server.add_argument("--allowed-methods", nargs="+", default=["*"],
                        help="HTTP methods allowed to cross-origin callers (with "
                             "--allowed-origins).")
    server.add_argument("--allowed-headers", nargs="+", default=["*"],
                        help="Request headers allowed to cross-origin callers (with "
                             "--allowed-origins).")
    server.add_argument("--allow-credentials", action="store_true",
                        help="Let cross-origin callers send cookies and Authorization (with "
                             "--allowed-origins).")
    server.add_argument("--disable-fastapi-docs", action="store_true",
                        help="Do not serve the OpenAPI schema, Swagger UI or ReDoc.")
    server.add_argument("--enable-log-requests", action="store_true",
                        help="Log each request's id, sampling parameters and prompt. Off by "
                             "default: prompts are the users' data.")
    server.add_argument("--enable-log-outputs", action="store_true",
                        help="Also log each finished request's output text (needs "
                             "--enable-log-requests).")
    server.add_argument("--max-log-len", type=_positive_int, default=None,
                        help="Characters (and token ids) of a prompt or output to log at most; "
                             "unlimited by default.")

    limits = parser.add_argument_group(
        "request limits", "Bounds on what one request may ask for, so a single client cannot "
        "exhaust the server's memory or CPU. Larger requests get a 4xx, never a 5xx.")
    limits.add_argument("--max-request-body-bytes", type=_positive_int, default=4 * 2**20,
                        help="Largest request body accepted; larger ones get 413 before they "
                             "are read.")
    limits.add_argument("--max-n-sequences", type=_positive_int, default=64,
                        help="Most sequences one request may generate: n times the number of "
                             "prompts (vLLM's VLLM_MAX_N_SEQUENCES).")
    limits.add_argument("--max-stop-sequences", type=_positive_int, default=16,
                        help="Most `stop` strings and most `stop_token_ids` per request; each is "
                             "checked after every generated token (OpenAI allows 4).")

    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help="A local Hugging Face folder, random:<preset>, or the embedded "
                            "default model.")
    model.add_argument("--tokenizer", default=None, help="Tokenizer folder; defaults to --model.")
    model.add_argument("--dtype", default="auto",
                       choices=["auto", "half", "float16", "bfloat16", "float", "float32"],
                       help="Weights and activations dtype; auto is bfloat16 on CUDA, float32 "
                            "on CPU.")
    model.add_argument("--max-model-len", type=_positive_int, default=None,
                       help="Model context length (prompt plus output); defaults to the "
                            "model's.")
    model.add_argument("--seed", type=int, default=0, help="Random seed.")
    model.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                       help="Device to run on.")

    cache = parser.add_argument_group("KV cache")
    cache.add_argument("--block-size", type=_positive_int, default=16,
                       help="Tokens per KV cache block.")
    cache.add_argument("--gpu-memory-utilization", type=float, default=0.9,
                       help="Fraction of GPU memory for weights, activations and KV cache.")
    cache.add_argument("--num-gpu-blocks-override", type=_positive_int, default=None,
                       help="Use exactly this many KV cache blocks, whatever the memory says.")
    cache.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction,
                       default=False, help="Reuse the KV blocks of shared prompt prefixes.")
    cache.add_argument("--kv-allocator", default="paged", choices=["reserved", "paged"],
                       help="Lab 1 switch: reserve max_model_len per sequence, or allocate "
                            "blocks on demand.")

    sched = parser.add_argument_group("scheduler")
    sched.add_argument("--max-num-seqs", type=_positive_int, default=256,
                       help="Maximum number of sequences per step.")
    sched.add_argument("--max-num-batched-tokens", type=_positive_int, default=None,
                       help="Token budget of one step.")
    sched.add_argument("--enable-chunked-prefill", action=argparse.BooleanOptionalAction,
                       default=False, help="Split long prompts across steps.")
    sched.add_argument("--scheduler", default="continuous", choices=["static", "continuous"],
                       help="Lab 3 switch: static batching or continuous batching.")

    execution = parser.add_argument_group("execution")
    execution.add_argument("--attention", default="auto", choices=["auto", "torch", "triton"],
                           help="Lab 2 switch: attention backend (auto: triton on CUDA, torch "
                                "on CPU).")
    execution.add_argument("--enforce-eager", action="store_true",
                           help="Never capture CUDA graphs.")
    execution.add_argument("--async-scheduling", action=argparse.BooleanOptionalAction,
                           default=None,
                           help="Prepare the next step while the GPU runs this one (default: on "
                                "for CUDA with one GPU, off on CPU).")
    execution.add_argument("--tensor-parallel-size", "-tp", type=_positive_int, default=1,
                           help="Number of GPUs the model is split across.")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_arg_parser()
    args = parser.parse_args(argv)
    if args.model_tag is not None:
        if args.model != parser.get_default("model") and args.model != args.model_tag:
            parser.error(f"the model is given twice: {args.model_tag} and --model {args.model}")
        args.model = args.model_tag
    if args.api_key is None:
        args.api_key = os.environ.get(API_KEY_ENV) or None
    if args.served_model_name is None:
        args.served_model_name = [args.model]
    for name in ("allowed_origins", "allowed_methods", "allowed_headers"):
        try:
            setattr(args, name, _flatten_json_lists(getattr(args, name)))
        except ValueError as e:
            parser.error(f"--{name.replace('_', '-')}: {e}")
    if args.enable_log_outputs and not args.enable_log_requests:
        parser.error("--enable-log-outputs needs --enable-log-requests")
    return args


def _flatten_json_lists(values: list[str] | None) -> list[str] | None:
    """`--allowed-origins a b` or vLLM's `--allowed-origins '["a", "b"]'`: both give [a, b]."""
    if values is None:
        return None
    flat: list[str] = []
    for value in values:
        if not value.startswith("["):
            flat.append(value)
            continue
        items = json.loads(value)
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"expected a JSON list of strings, got {value}")
        flat += items
    return flat


def non_default_args(args: argparse.Namespace) -> dict:
    """What the user changed, for the start-up log (vLLM logs `non-default args: {...}`)."""
    parser = make_arg_parser()
    hidden = {"api_key", "model_tag"}
    return {k: v for k, v in vars(args).items()
            if k not in hidden and v != parser.get_default(k)
            and not (k == "served_model_name" and v == [args.model])}


def engine_config_from_args(args: argparse.Namespace) -> EngineConfig:
    """Every flag named like an EngineConfig field sets that field."""
    values = vars(args)
    return EngineConfig(**{f.name: values[f.name] for f in fields(EngineConfig)
                           if f.name in values})
