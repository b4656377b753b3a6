"""End-to-end runs for the graded checks: greedy generation on a `random:tiny-*` model.

Greedy decoding is deterministic, so the token ids a run produces are a fingerprint of every
layer under it: a wrong slot, a block freed too early, an attention kernel off by a little, a
scheduler that loses a preempted sequence's tokens, all change them. `record` stores the
reference's token ids per device class (CPU float32, CUDA bfloat16 give different ones); the
checks rerun the same configuration on the student's code and compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class GreedyRun:
    token_ids: list[list[int]]
    num_cached_tokens: list[int]
    """Per prompt: tokens found in the prefix cache (lab 5)."""
    num_preemptions: int
    num_free_blocks_after: int
    num_blocks: int


def device_class() -> str:
    """Which recorded outputs apply here: `cuda` on an NVIDIA GPU, `cpu` otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def seeded_prompts(lengths: list[int], vocab_size: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (n,), generator=generator).tolist() for n in lengths]


def greedy_run(model: str, prompts: list[list[int]], max_tokens: int,
               engine: dict[str, Any]) -> GreedyRun:
    """Generate max_tokens greedy tokens (EOS ignored) for each prompt with LLM(model,
    **engine); also report the scheduler's preemptions and the KV blocks left free after."""
    from minivllm import LLM, SamplingParams

    llm = LLM(model, **engine)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    core = llm.llm_engine
    return GreedyRun(token_ids=[list(o.outputs[0].token_ids) for o in outputs],
                     num_cached_tokens=[o.num_cached_tokens for o in outputs],
                     num_preemptions=core.scheduler.num_preemptions,
                     num_free_blocks_after=core.kv_cache_manager.num_free_blocks,
                     num_blocks=core.kv_cache_manager.num_blocks)
