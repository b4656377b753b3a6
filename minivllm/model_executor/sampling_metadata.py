"""SamplingMetadata: the sampling parameters of one step's batch, as tensors on the device.

Mirrors vLLM v1's `vllm/v1/sample/metadata.py`. The `Sampler` works on a whole batch at once:
instead of asking each sequence's `SamplingParams` in a Python loop on every step, the engine
gathers them here into one tensor per parameter (one row per sequence to sample), and records
which work the batch needs at all (`all_greedy`, `no_penalties`, `top_k is None`, ...), so that
a batch that does not use a feature pays nothing for it.

Everything is built on the host and copied to the device without waiting for the GPU: the model
may still be running when this is built, and the sampler's result is read back (`.tolist()`)
only once, by the engine.
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass

import torch

from minivllm.sampling_params import SamplingParams, SamplingType
from minivllm.sequence import Sequence


def async_tensor_h2d(data: list, dtype: torch.dtype,
                     device: torch.device) -> torch.Tensor:
    """A host list as a tensor on `device`, without blocking the host (vLLM's
    `async_tensor_h2d`). Copies from ordinary (pageable) memory make CUDA wait until the GPU
    is idle; from page-locked (pinned) memory they are queued behind the running kernels."""
    tensor = torch.tensor(data, dtype=dtype)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _padded_token_ids(lists: list[list[int]], pad_id: int,
                      device: torch.device) -> torch.Tensor:
    """[B, longest] int64: token id lists padded with `pad_id` (one past the vocabulary, so a
    scatter into a `vocab_size + 1` wide table can drop the padding in one slice)."""
    width = max(len(ids) for ids in lists)
    return async_tensor_h2d([ids + [pad_id] * (width - len(ids)) for ids in lists],
                            torch.int64, device)


@dataclass
class SamplingMetadata:
    temperature: torch.Tensor | None
    """[B] float32, as requested (greedy rows below _SAMPLING_EPS); None when all greedy."""
    all_greedy: bool
    """No row samples: the sampler takes an argmax and skips the random path entirely."""
    all_random: bool
    """No greedy row: the sampler skips the argmax and the greedy/random merge."""

    top_k: torch.Tensor | None
    """[B] int64, vocab_size where disabled; None when no row uses top-k."""
    max_top_k: int
    """Largest enabled top_k (a host int, so `torch.topk` needs no device-to-host read)."""
    top_p: torch.Tensor | None
    """[B] float32; None when every row has top_p = 1."""
    min_p: torch.Tensor | None
    """[B] float32; None when every row has min_p = 0."""
    generators: dict[int, torch.Generator]
    """Row -> the sequence's own generator, for seeded rows only."""

    no_penalties: bool
    """No row has a penalty: the token tensors and penalty tensors below are None."""
    prompt_token_ids: torch.Tensor | None
    """[B, longest prompt] int64, padded with vocab_size (for the repetition penalty)."""
    output_token_ids: torch.Tensor | None
    """[B, longest output] int64, padded with vocab_size (for all three penalties)."""
    presence_penalties: torch.Tensor | None
    frequency_penalties: torch.Tensor | None
    repetition_penalties: torch.Tensor | None

    min_tokens_mask: tuple[torch.Tensor, torch.Tensor] | None
    """(rows, token ids): logits to set to -inf because the row has fewer than `min_tokens`
    outputs and the token would stop it; None when no row is below its minimum."""

    max_num_logprobs: int | None
    """Most alternatives any row asked for (rows that asked for fewer slice their part);
    None when no row wants logprobs, so none are computed."""

    @classmethod
    def from_sequences(cls, seqs: SequenceOf[Sequence], vocab_size: int,
                       device: torch.device | str) -> SamplingMetadata:
        """Gather the parameters of `seqs` (one row each, in this order). Seeded sequences get
        their generator here on first use, seeded with `seed + index` so the n samples of one
        request differ; it stays on the sequence so its random stream continues next step.

        Built every step for every sampled row, so the common batch, where every row is greedy
        with no penalty, minimum length or logprobs, costs one pass over the rows and gathers
        nothing (it is what the general path would build for it). In an all-greedy batch the
        random-sampling parameters (temperature, top-k, top-p, min-p) are never read: they are
        left None."""
        params = [seq.sampling_params for seq in seqs]
        if params and all(p.sampling_type == SamplingType.GREEDY and p.logprobs is None
                          and p.min_tokens == 0 and not p.has_penalties for p in params):
            return cls(temperature=None, all_greedy=True, all_random=False, top_k=None,
                       max_top_k=0, top_p=None, min_p=None, generators={}, no_penalties=True,
                       prompt_token_ids=None, output_token_ids=None, presence_penalties=None,
                       frequency_penalties=None, repetition_penalties=None,
                       min_tokens_mask=None, max_num_logprobs=None)
        return cls._gather(seqs, params, vocab_size, torch.device(device))

    @classmethod
    def _gather(cls, seqs: SequenceOf[Sequence], params: list[SamplingParams], vocab_size: int,
                device: torch.device) -> SamplingMetadata:
        greedy = [p.sampling_type == SamplingType.GREEDY for p in params]
        all_greedy, all_random = all(greedy), not any(greedy)

        generators: dict[int, torch.Generator] = {}
        for row, seq in enumerate(seqs):
            p = seq.sampling_params
            if p.sampling_type == SamplingType.RANDOM_SEED:
                if seq.generator is None:
                    seq.generator = torch.Generator(device=device)
                    seq.generator.manual_seed(p.seed + seq.index)
                generators[row] = seq.generator

        # Greedy rows hold neutral top-k/top-p/min-p (SamplingParams resets them), so an
        # all-greedy batch gets None for each.
        top_ks = [min(p.top_k, vocab_size) if p.top_k > 0 else vocab_size for p in params]
        enabled_top_ks = [k for k in top_ks if k < vocab_size]
        top_ps = [p.top_p for p in params]
        min_ps = [p.min_p for p in params]

        no_penalties = not any(p.has_penalties for p in params)

        mask_rows: list[int] = []
        mask_tokens: list[int] = []
        for row, seq in enumerate(seqs):
            p = seq.sampling_params
            if len(seq.output_token_ids) < p.min_tokens:
                stop_ids = [t for t in p.all_stop_token_ids if t < vocab_size]
                mask_rows += [row] * len(stop_ids)
                mask_tokens += stop_ids

        num_logprobs = [p.logprobs for p in params if p.logprobs is not None]

        def floats(values: list[float]) -> torch.Tensor:
            return async_tensor_h2d(values, torch.float32, device)

        return cls(
            temperature=None if all_greedy else floats([p.temperature for p in params]),
            all_greedy=all_greedy,
            all_random=all_random,
            top_k=async_tensor_h2d(top_ks, torch.int64, device) if enabled_top_ks else None,
            max_top_k=max(enabled_top_ks, default=0),
            top_p=floats(top_ps) if any(p < 1.0 for p in top_ps) else None,
            min_p=floats(min_ps) if any(p > 0.0 for p in min_ps) else None,
            generators=generators,
            no_penalties=no_penalties,
            prompt_token_ids=None if no_penalties else _padded_token_ids(
                [seq.prompt_token_ids for seq in seqs], vocab_size, device),
            output_token_ids=None if no_penalties else _padded_token_ids(
                [seq.output_token_ids for seq in seqs], vocab_size, device),
            presence_penalties=None if no_penalties else floats(
                [p.presence_penalty for p in params]),
            frequency_penalties=None if no_penalties else floats(
                [p.frequency_penalty for p in params]),
            repetition_penalties=None if no_penalties else floats(
                [p.repetition_penalty for p in params]),
            min_tokens_mask=(async_tensor_h2d(mask_rows, torch.int64, device),
                             async_tensor_h2d(mask_tokens, torch.int64, device))
            if mask_rows else None,
            max_num_logprobs=max(num_logprobs) if num_logprobs else None,
        )
