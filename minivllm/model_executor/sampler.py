"""Sampler: from the last position's logits of every sequence to one next token each.

Mirrors vLLM v1's `vllm/v1/sample/sampler.py` (and `ops/penalties.py`, `ops/topk_topp_sampler.py`).
One batched pass on the device, in vLLM's order:

1. logprobs of the *raw* logits (vLLM's default `logprobs_mode="raw_logprobs"`): what the model
   thinks, before this request's processing; taken first because the steps below change logits;
2. `min_tokens`: stop tokens get -inf while a sequence is shorter than its minimum;
3. penalties (repetition on prompt + output; presence and frequency on the output);
4. greedy rows: argmax. Random rows: temperature, top-k, top-p, min-p, then one draw.

On CUDA the argmaxes run in a Triton kernel (`triton_argmax.py`): `torch.argmax` keeps too few
thread blocks busy on a few very long rows. Nothing here reads a tensor back to the host (no
`.item()`, no `.tolist()`, no data-dependent Python `if`): every decision that needs a value is
made in `SamplingMetadata` on the host, so the GPU runs the sampler right behind the model and
the engine syncs once, on the result. The input logits are left untouched. They come in the
model dtype and are cast to float32 only by the steps that need the precision (logprobs,
penalties, random sampling): an argmax picks the same token from bf16 logits, as the cast is
exact and keeps the order, so a greedy batch writes no [B, V] float32 copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from minivllm.model_executor.sampling_metadata import SamplingMetadata
from minivllm.model_executor.triton_argmax import argmax
from minivllm.sampling_params import _SAMPLING_EPS


@dataclass
class SamplerOutput:
    sampled_token_ids: torch.Tensor
    """[B] int64: the next token of each sequence."""
    logprob_token_ids: torch.Tensor | None
    """[B, 1 + max_num_logprobs] int64: the sampled token, then the most likely tokens in
    order; None when no sequence asked for logprobs."""
    logprobs: torch.Tensor | None
    """[B, 1 + max_num_logprobs] float32: the raw log probabilities of those tokens."""
    sampled_token_ranks: torch.Tensor | None
    """[B] int64: rank of the sampled token among the raw logprobs (1 = most likely)."""


class Sampler(nn.Module):
    def forward(self, logits: torch.Tensor, metadata: SamplingMetadata) -> SamplerOutput:
        """`logits`: [B, V], one row per sequence, in the order of `metadata`'s rows."""
        raw_logprobs = (None if metadata.max_num_logprobs is None
                        else torch.log_softmax(logits, dim=-1, dtype=torch.float32))

        if metadata.min_tokens_mask is not None:
            logits = logits.clone()
            logits[metadata.min_tokens_mask] = float("-inf")
        if not metadata.no_penalties:
            logits = apply_penalties(logits.float(), metadata)

        sampled = self.sample(logits, metadata)

        if raw_logprobs is None:
            return SamplerOutput(sampled, None, None, None)
        token_ids, logprobs, ranks = gather_logprobs(
            raw_logprobs, metadata.max_num_logprobs, sampled)
        return SamplerOutput(sampled, token_ids, logprobs, ranks)

    @staticmethod
    def sample(logits: torch.Tensor, metadata: SamplingMetadata) -> torch.Tensor:
        """Greedy rows take the argmax; random rows draw from the processed distribution. A
        mixed batch runs both paths on every row and keeps the right one per row: two batched
        passes beat splitting the batch (vLLM does the same). min-p comes after top-k/top-p,
        as in vLLM v0 (v1 applies it before; the two orders differ only when top-p is set)."""
        greedy = None if metadata.all_random else argmax(logits)
        if metadata.all_greedy:
            return greedy

        temperature = metadata.temperature
        if not metadata.all_random:  # greedy rows hold temperature 0: avoid dividing by it
            temperature = torch.where(temperature < _SAMPLING_EPS, 1.0, temperature)
        logits = logits.float() / temperature.unsqueeze(1)
        logits = apply_top_k_top_p(logits, metadata.top_k, metadata.max_top_k, metadata.top_p)
        if metadata.min_p is not None:
            logits = apply_min_p(logits, metadata.min_p)
        sampled = random_sample(logits.softmax(dim=-1), metadata.generators)

        if greedy is None:
            return sampled
        return torch.where(metadata.temperature < _SAMPLING_EPS, greedy, sampled)


def _bin_counts(token_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[B, V] int64: how often each token occurs in each row of `token_ids` (padded with V)."""
    counts = torch.zeros(token_ids.shape[0], vocab_size + 1, dtype=torch.int64,
                         device=token_ids.device)
    counts.scatter_add_(1, token_ids, torch.ones_like(token_ids))
    return counts[:, :vocab_size]


def apply_penalties(logits: torch.Tensor, metadata: SamplingMetadata) -> torch.Tensor:
    """vLLM's `apply_penalties`. Repetition (CTRL / Hugging Face): for every token seen in the
    prompt or the output, divide a positive logit by the penalty and multiply a negative one,
    so the token always becomes less likely for a penalty > 1. Frequency and presence (OpenAI):
    subtract `count * frequency_penalty + (count > 0) * presence_penalty`, counting the output
    only."""
    vocab_size = logits.shape[1]
    output_counts = _bin_counts(metadata.output_token_ids, vocab_size)
    output_mask = output_counts > 0
    seen = (_bin_counts(metadata.prompt_token_ids, vocab_size) > 0) | output_mask

    penalty = torch.where(seen, metadata.repetition_penalties.unsqueeze(1), 1.0)
    logits = torch.where(logits > 0, logits / penalty, logits * penalty)
    logits = logits - metadata.frequency_penalties.unsqueeze(1) * output_counts
    return logits - metadata.presence_penalties.unsqueeze(1) * output_mask


def apply_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor | None, max_top_k: int,
                      top_p: torch.Tensor | None) -> torch.Tensor:
    """Set to -inf every logit outside the row's top-k tokens and outside its top-p nucleus
    (vLLM's `apply_top_k_top_p`). Ties with the k-th logit are kept.

    top-k alone needs only the k-th largest logit per row, which `torch.topk` finds without
    sorting the vocabulary. top-p needs the sorted distribution: in ascending order, a token is
    dropped when the probabilities up to and including it add up to at most 1 - p, i.e. the
    tokens after it already hold p of the mass. The most likely token always stays."""
    if top_p is None:
        if top_k is None:
            return logits
        # The k-th largest logit of each row (rows with top-k disabled: -inf keeps all).
        kth = logits.topk(max_top_k, dim=-1).values.gather(
            1, (top_k.clamp(max=max_top_k) - 1).unsqueeze(1))
        kth = kth.masked_fill((top_k == logits.shape[1]).unsqueeze(1), float("-inf"))
        return logits.masked_fill(logits < kth, float("-inf"))

    logits_sort, logits_idx = logits.sort(dim=-1, descending=False)
    if top_k is not None:
        kth = logits_sort.gather(1, (logits.shape[1] - top_k).unsqueeze(1))
        logits_sort = logits_sort.masked_fill(logits_sort < kth, float("-inf"))
    cumulative = logits_sort.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= 1 - top_p.unsqueeze(1)
    drop[:, -1] = False
    logits_sort = logits_sort.masked_fill(drop, float("-inf"))
    return logits_sort.scatter(1, logits_idx, logits_sort)


def apply_min_p(logits: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Drop tokens with p < min_p * p_max. In log space (softmax's normaliser cancels), that is
    `logit < max_logit + log(min_p)`; min_p = 0 gives log 0 = -inf and drops nothing."""
    threshold = logits.amax(dim=-1, keepdim=True) + min_p.log().unsqueeze(1)
    return logits.masked_fill(logits < threshold, float("-inf"))


def random_sample(probs: torch.Tensor, generators: dict[int, torch.Generator]) -> torch.Tensor:
    """One draw per row with the exponential race: argmax_i p_i / q_i with q_i ~ Exp(1) picks
    token i with probability p_i (q_i / p_i ~ Exp(p_i), and the smallest of independent
    exponentials is the i-th with probability p_i / sum p). Unlike `torch.multinomial` it is
    one elementwise pass plus an argmax, and never syncs with the host.

    Unseeded rows share the device's global RNG; each seeded row overwrites its noise from its
    own generator, so its draws depend only on its own seed and history, never on which other
    sequences are in the batch."""
    q = torch.empty_like(probs)
    if len(generators) != probs.shape[0]:
        q.exponential_()
    for row, generator in generators.items():
        q[row].exponential_(generator=generator)
    return argmax(probs.div(q))


def gather_logprobs(logprobs: torch.Tensor, num_logprobs: int, sampled: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token ids, logprobs) of the sampled token followed by the `num_logprobs` most likely
    tokens, and the sampled token's rank: how many tokens are at least as likely as it."""
    top_logprobs, top_ids = logprobs.topk(num_logprobs, dim=-1)
    sampled_logprobs = logprobs.gather(1, sampled.unsqueeze(1))
    ranks = (logprobs >= sampled_logprobs).sum(dim=-1)
    return (torch.cat((sampled.unsqueeze(1), top_ids), dim=1),
            torch.cat((sampled_logprobs, top_logprobs), dim=1),
            ranks)
