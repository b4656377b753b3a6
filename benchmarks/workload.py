"""The offline workload nano-vllm and vLLM report: random token-id prompts whose input and
output lengths are each uniform in [100, 1024] (seeded), generated with ignore_eos."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Request:
    prompt_token_ids: list[int]
    output_len: int


def random_workload(num_prompts: int, vocab_size: int, input_range: tuple[int, int] = (100, 1024),
                    output_range: tuple[int, int] = (100, 1024), seed: int = 0) -> list[Request]:
    rng = random.Random(seed)
    return [Request([rng.randrange(vocab_size) for _ in range(rng.randint(*input_range))],
                    rng.randint(*output_range)) for _ in range(num_prompts)]


def decode_kv_token_reads(requests: list[Request]) -> int:
    """Tokens of KV cache read by all decode steps: the step that produces output token j of a
    request with input length I attends to I + j - 1 cached tokens (j = 1..O)."""
    return sum(r.output_len * len(r.prompt_token_ids) + r.output_len * (r.output_len - 1) // 2
               for r in requests)
