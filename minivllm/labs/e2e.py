"""End-to-end runs for the graded checks: greedy generation on a `random:tiny-*` model.

Greedy decoding is deterministic, so the token ids a run produces are a fingerprint of every
layer under it: a wrong slot, a block freed too early, an attention kernel off by a little, a
scheduler that loses a preempted sequence's tokens, all change them. `record` stores the
reference's token ids per device class (CPU float32, CUDA bfloat16 give different ones); the
checks rerun the same configuration on the student's code and compare.

One thing besides a bug changes them: a tie. The random tiny models spread their probability
almost evenly, and bf16 logits have 8 bits of mantissa, so two tokens often get the same logit,
or logits one rounding step apart; then a GPU of another kind (the fixtures come from an H100,
an H200 sums in another order) may take the other one, and the two runs part ways from there.
So, as vLLM's `check_logprobs_close` does, the tokens must match up to the first difference,
and there the reference's token must be a tie in the student's run: within
`TIE_TOLERANCE[dtype]` of the chosen token's logprob. What follows a tie is not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

TIE_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 0.01, torch.float16: 0.01}
"""How far below the chosen token's logprob the reference's token may be for the two to count
as a tie. bf16: a few rounding steps of the tiny models' logits (on an H200, the H100 fixtures'
tokens were found 0 to 0.002 below). float32: rounding noise only."""

NUM_LOGPROBS = 20
"""Alternatives recorded per generated token: enough to hold every token of a tie."""


@dataclass
class GreedyRun:
    token_ids: list[list[int]]
    num_cached_tokens: list[int]
    """Per prompt: tokens found in the prefix cache (lab 5)."""
    num_preemptions: int
    num_free_blocks_after: int
    num_blocks: int
    logprobs: list[list[dict[int, float]]]
    """Per prompt, per generated token: logprob of the chosen token and the top alternatives."""
    dtype: torch.dtype


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
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True,
                            logprobs=NUM_LOGPROBS)
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    core = llm.llm_engine
    return GreedyRun(token_ids=[list(o.outputs[0].token_ids) for o in outputs],
                     num_cached_tokens=[o.num_cached_tokens for o in outputs],
                     num_preemptions=core.scheduler.num_preemptions,
                     num_free_blocks_after=core.kv_cache_manager.num_free_blocks,
                     num_blocks=core.kv_cache_manager.num_blocks,
                     logprobs=[[{t: lp.logprob for t, lp in step.items()}
                                for step in o.outputs[0].logprobs] for o in outputs],
                     dtype=core.config.torch_dtype)


def assert_same_greedy_tokens(name: str, expected: list[list[int]], run: GreedyRun) -> None:
    """Each prompt's tokens equal the reference's, up to a tie (see the module docstring)."""
    tolerance = TIE_TOLERANCE[run.dtype]
    for i, (want, got) in enumerate(zip(expected, run.token_ids, strict=True)):
        if got == want:
            continue
        message = f"{name}, prompt {i}: expected tokens {want}, got {got}"
        assert len(got) == len(want), message
        pos = next(p for p, (a, b) in enumerate(zip(want, got, strict=True)) if a != b)
        step = run.logprobs[i][pos]
        gap = step[got[pos]] - step.get(want[pos], float("-inf"))
        assert gap <= tolerance, (
            f"{message}; at token {pos} the expected {want[pos]} is {gap:.4g} below your "
            f"{got[pos]} in logprob, more than a tie ({tolerance:g} for {run.dtype})")
