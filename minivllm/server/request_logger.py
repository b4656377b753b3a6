"""`--enable-log-requests` / `--enable-log-outputs`: one log line per request (vLLM's
`RequestLogger`, `vllm/entrypoints/logger.py`).

Off by default, as in vLLM: prompts and completions are the users' data and often private, and
a log file is copied, shipped and kept far more freely than the requests were. With the flags
on, `--max-log-len` clips what is written (characters of text, entries of token-id lists).
"""

from __future__ import annotations

import logging

from transformers import PreTrainedTokenizerBase

from minivllm.outputs import RequestOutput
from minivllm.sampling_params import SamplingParams

logger = logging.getLogger("minivllm")


class RequestLogger:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, max_log_len: int | None,
                 log_outputs: bool) -> None:
        self.tokenizer = tokenizer
        self.max_log_len = max_log_len
        self.log_outputs_enabled = log_outputs

    def _clip(self, value: str | list[int]) -> str | list[int]:
        return value if self.max_log_len is None else value[:self.max_log_len]

    def log_inputs(self, request_id: str, prompt: str | list[int],
                   params: SamplingParams) -> None:
        # The server hands the engine token ids; the text is what the model will read.
        text = prompt if isinstance(prompt, str) else self.tokenizer.decode(prompt)
        token_ids = None if isinstance(prompt, str) else self._clip(prompt)
        logger.info("Received request %s: prompt: %r, params: %s, prompt_token_ids: %s",
                    request_id, self._clip(text), params, token_ids)

    def log_outputs(self, output: RequestOutput) -> None:
        if not self.log_outputs_enabled:
            return
        for c in output.outputs:
            logger.info("Generated response %s (choice %d): output: %r, output_token_ids: %s, "
                        "finish_reason: %s", output.request_id, c.index, self._clip(c.text),
                        self._clip(c.token_ids), c.finish_reason)

    def log_abort(self, request_id: str) -> None:
        logger.info("Aborted request %s.", request_id)
