"""minivllm's OpenAI-compatible HTTP server: `python -m minivllm.server` (lab 4).

Mirrors vLLM's `vllm/entrypoints/openai/`: `cli_args` (flags), `api_server` (app, routes,
start-up), `protocol` (the OpenAI wire format), `serving_*` (one class per endpoint family),
`errors` (OpenAI's error envelope), `metrics` (Prometheus). The engine loop it drives is
`minivllm.engine.async_llm_engine.AsyncLLMEngine`.
"""
