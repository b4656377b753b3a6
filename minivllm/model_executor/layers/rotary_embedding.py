"""Rotary position embedding, RoPE (vLLM: `layers/rotary_embedding.py`).

RoPE encodes a token's position by rotating pairs of query/key channels by an angle that grows
with the position: pair i turns by `position * inv_freq[i]`, with
`inv_freq[i] = rope_theta ** (-2i / head_size)`. The dot product of a rotated query and a
rotated key then depends only on their distance.

Llama, Qwen and Mistral pair channel i with channel i + head_size/2 (the "NeoX" layout, HF's
`rotate_half`). llama.cpp stores Q/K weights for the other layout (adjacent pairs), which is why
the GGUF converter permutes those rows back.

Like vLLM we precompute `cos_sin_cache[position] = [cos(angles) | sin(angles)]` once for every
position up to `max_position_embeddings`; a forward pass only indexes it. On CUDA the rotation
(and Qwen3's per-head RMSNorm before it) runs as one Triton kernel, `triton_rope.py`; the
PyTorch code here is what it computes, and what runs on a CPU.

Two `rope_type`s are supported:
- "default": plain `rope_theta`;
- "llama3": Llama 3.1/3.2's context extension, which slows down the low frequencies (long
  wavelengths) by `factor`, keeps the high ones and blends smoothly in between.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from minivllm.model_executor.layers.layernorm import RMSNorm
from minivllm.model_executor.layers.triton_rope import KVCacheWrite, rope_


def default_inv_freq(head_size: int, rope_theta: float) -> torch.Tensor:
    """[head_size / 2] float32 rotation speed of each channel pair."""
    exponents = torch.arange(0, head_size, 2, dtype=torch.int64).float() / head_size
    return 1.0 / (rope_theta ** exponents)


def llama3_inv_freq(head_size: int, rope_theta: float, factor: float, low_freq_factor: float,
                    high_freq_factor: float, original_max_position_embeddings: int
                    ) -> torch.Tensor:
    """Llama 3's frequency scaling: wavelengths shorter than `original / high_freq_factor` keep
    their speed, those longer than `original / low_freq_factor` turn `factor` times slower, and
    the band in between interpolates linearly in `original / wavelength`."""
    inv_freq = default_inv_freq(head_size, rope_theta)
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_max_position_embeddings / low_freq_factor
    high_freq_wavelen = original_max_position_embeddings / high_freq_factor
    smooth = ((original_max_position_embeddings / wavelen - low_freq_factor)
              / (high_freq_factor - low_freq_factor))
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    return torch.where(wavelen < high_freq_wavelen, inv_freq,
                       torch.where(wavelen > low_freq_wavelen, inv_freq / factor, blended))


def compute_inv_freq(head_size: int, rope_parameters: dict[str, Any]) -> torch.Tensor:
    """Dispatch on `rope_parameters["rope_type"]` (see `get_rope_parameters`)."""
    rope_type = rope_parameters["rope_type"]
    theta = rope_parameters["rope_theta"]
    if rope_type == "default":
        return default_inv_freq(head_size, theta)
    if rope_type == "llama3":
        return llama3_inv_freq(
            head_size, theta, rope_parameters["factor"], rope_parameters["low_freq_factor"],
            rope_parameters["high_freq_factor"],
            rope_parameters["original_max_position_embeddings"])
    raise NotImplementedError(f"rope_type {rope_type!r} is not supported (only 'default' and "
                              "'llama3')")


class RotaryEmbedding(nn.Module):
    def __init__(self, head_size: int, max_position_embeddings: int,
                 rope_parameters: dict[str, Any]) -> None:
        super().__init__()
        self.head_size = head_size
        inv_freq = compute_inv_freq(head_size, rope_parameters)
        positions = torch.arange(max_position_embeddings, dtype=torch.float32)
        angles = torch.outer(positions, inv_freq)  # [max_pos, head_size / 2], float32
        cache = torch.cat([angles.cos(), angles.sin()], dim=-1)
        # Stored in the model dtype (HF casts its float32 cos/sin to the activations' dtype too);
        # not in the state dict: it is derived from the config, not learned.
        self.register_buffer("cos_sin_cache", cache.to(torch.get_default_dtype()),
                             persistent=False)

    def forward(self, positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                q_norm: RMSNorm | None = None, k_norm: RMSNorm | None = None,
                cache_write: KVCacheWrite | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [T]; query [T, num_heads * head_size], key [T, num_kv_heads * head_size].
        Returns the rotated query and key, same shapes. With `q_norm` and `k_norm` (Qwen3),
        every head is RMS-normalized first.

        On CUDA one Triton kernel does it all, in place (triton_rope.py); elsewhere the
        PyTorch code below runs, layer after layer. `cache_write` (CUDA only) sends the
        rotated keys and the values to the paged KV cache instead: the returned key is then
        not rotated, and only the cache is to be read."""
        if query.is_cuda:
            norm = () if q_norm is None else (q_norm.weight, k_norm.weight,
                                               q_norm.variance_epsilon)
            rope_(positions, query, key, self.cos_sin_cache, self.head_size, *norm,
                  cache_write=cache_write)
            return query, key
        if q_norm is not None:
            query = q_norm(query.unflatten(-1, (-1, self.head_size))).flatten(-2)
            key = k_norm(key.unflatten(-1, (-1, self.head_size))).flatten(-2)
        return apply_rope(positions, query, key, self.cos_sin_cache, self.head_size)


def apply_rope(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
               cos_sin_cache: torch.Tensor, head_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = cos_sin_cache[positions].unsqueeze(1).chunk(2, dim=-1)
    return _rotate(query, cos, sin, head_size), _rotate(key, cos, sin, head_size)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, head_size: int
            ) -> torch.Tensor:
    """Rotate each (x1[i], x2[i]) pair, x1 and x2 being the two halves of every head:
    (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)."""
    heads = x.unflatten(-1, (-1, head_size))  # [T, H, head_size]
    x1, x2 = heads.chunk(2, dim=-1)
    rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return rotated.flatten(-2)
