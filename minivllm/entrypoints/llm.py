"""`LLM`: offline batched generation with vLLM's interface.

    llm = LLM(model="...", max_model_len=2048)
    outputs = llm.generate(["Hello, my name is"], SamplingParams(temperature=0))
    outputs = llm.chat([{"role": "user", "content": "What is the capital of France?"}])

Everything is handed to the engine at once and stepped until done: the scheduler decides how
to batch (mirrors `vllm.LLM`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence as Seq
from dataclasses import replace
from typing import Any

from tqdm.auto import tqdm

from minivllm.config import DEFAULT_MODEL, EngineConfig
from minivllm.engine.llm_engine import LLMEngine
from minivllm.outputs import RequestOutput
from minivllm.sampling_params import RequestOutputKind, SamplingParams

PromptType = str | dict[str, Any] | list[int]
"""A text prompt, vLLM's `TokensPrompt` dict {"prompt_token_ids": [...]}, or token ids."""

Message = dict[str, str]


class LLM:
    def __init__(self, model: str = DEFAULT_MODEL, **kwargs: Any) -> None:
        self.llm_engine = LLMEngine(EngineConfig(model=model, **kwargs))
        self._request_counter = itertools.count()

    def get_tokenizer(self):
        return self.llm_engine.tokenizer

    def generate(self, prompts: PromptType | Seq[PromptType],
                 sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
                 use_tqdm: bool = True) -> list[RequestOutput]:
        """Generate for every prompt; returns one RequestOutput per prompt, in order."""
        prompt_list = _as_prompt_list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        params_list = (list(sampling_params) if isinstance(sampling_params, Seq)
                       else [sampling_params] * len(prompt_list))
        # Only finished outputs are returned, so the engine need not build the others (vLLM's
        # LLM does the same). A copy: the caller's params are left as they were.
        params_list = [replace(p, output_kind=RequestOutputKind.FINAL_ONLY) for p in params_list]
        if len(params_list) != len(prompt_list):
            raise ValueError(f"Got {len(prompt_list)} prompts but {len(params_list)} "
                             "sampling_params")
        # Validate every prompt before any is queued, so a bad one leaves no half-added batch.
        request_ids = []
        engine = self.llm_engine
        try:
            for prompt, params in zip(prompt_list, params_list, strict=True):
                request_id = str(next(self._request_counter))
                engine.add_request(request_id, _prompt_input(prompt), params)
                request_ids.append(request_id)
        except ValueError:
            engine.abort_request(request_ids)
            raise
        return self._run_engine(request_ids, use_tqdm)

    def chat(self, messages: list[Message] | list[list[Message]],
             sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
             use_tqdm: bool = True, chat_template: str | None = None,
             add_generation_prompt: bool = True) -> list[RequestOutput]:
        """Apply the tokenizer's chat template (or `chat_template`) to each conversation and
        generate the assistant's reply."""
        conversations = messages if messages and isinstance(messages[0], list) else [messages]
        tokenizer = self.get_tokenizer()
        prompts = [{"prompt_token_ids": tokenizer.apply_chat_template(
            conv, chat_template=chat_template, add_generation_prompt=add_generation_prompt,
            tokenize=True, return_dict=False)} for conv in conversations]
        return self.generate(prompts, sampling_params, use_tqdm=use_tqdm)

    def _run_engine(self, request_ids: list[str], use_tqdm: bool) -> list[RequestOutput]:
        engine = self.llm_engine
        finished: dict[str, RequestOutput] = {}
        bar = tqdm(total=len(request_ids), desc="Processed prompts", disable=not use_tqdm,
                   dynamic_ncols=True)
        num_generated = 0
        with bar:
            while engine.has_unfinished_requests():
                for output in engine.step():
                    if output.finished:  # vLLM's bar counts tokens as requests finish, too
                        finished[output.request_id] = output
                        num_generated += sum(len(o.token_ids) for o in output.outputs)
                        bar.update(1)
                elapsed = bar.format_dict["elapsed"] or 1e-9
                bar.set_postfix_str(f"output: {num_generated / elapsed:.1f} tok/s", refresh=False)
        return [finished[rid] for rid in request_ids]


def _as_prompt_list(prompts: PromptType | Seq[PromptType]) -> list[PromptType]:
    if isinstance(prompts, (str, dict)):
        return [prompts]
    if prompts and all(isinstance(t, int) for t in prompts):
        return [list(prompts)]  # one prompt given as token ids
    return list(prompts)


def _prompt_input(prompt: PromptType) -> str | list[int]:
    if isinstance(prompt, dict):
        if "prompt_token_ids" in prompt:
            return list(prompt["prompt_token_ids"])
        return prompt["prompt"]
    return prompt
