"""`python -m minivllm.server [--model MODEL] [--port 8000] ...`: vLLM's
`python -m vllm.entrypoints.openai.api_server` / `vllm serve`."""

from __future__ import annotations

import logging
import sys

from minivllm.server.api_server import build_server
from minivllm.server.cli_args import make_arg_parser, parse_args

_LOG_FORMAT = "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s"
"""vLLM's log line: `INFO 05-01 12:00:00 [api_server.py:123] message`."""


def configure_logging() -> None:
    """Log the engine's and the server's steps (the `minivllm` logger) to stdout, once."""
    root = logging.getLogger("minivllm")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%m-%d %H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging()
    try:
        server, sock = build_server(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # a missing model, a bad value, a busy port: one line, no traceback
        logging.getLogger("minivllm").debug("Start-up failed", exc_info=True)
        detail = str(e) if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {e}"
        sys.exit(f"{make_arg_parser().prog}: error: {detail}")
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
