"""`python -m minivllm.server [--model MODEL] [--port 8000] ...`: vLLM's
`python -m vllm.entrypoints.openai.api_server` / `vllm serve`."""

from __future__ import annotations

import contextlib
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
        server, sock, engine = build_server(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # a missing model, a bad value, a busy port: one line, no traceback
        logging.getLogger("minivllm").debug("Start-up failed", exc_info=True)
        detail = str(e) if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {e}"
        sys.exit(f"{make_arg_parser().prog}: error: {detail}")
    # uvicorn shuts down cleanly on Ctrl-C, then raises the signal again for the caller, as
    # `uvicorn.run` does; like `uvicorn.run`, end there without a KeyboardInterrupt traceback.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    if engine.dead_error is not None:  # exit non-zero, so that a supervisor restarts us
        sys.exit(f"{make_arg_parser().prog}: error: the engine loop died "
                 f"({engine.dead_error!r}); see the traceback in the log above.")


if __name__ == "__main__":
    main()
