"""Programmatic dependent launch (`triton_utils.use_pdl`): a chain of PDL kernels in a CUDA
graph computes exactly what the same kernels compute launched one after the other.

With PDL a kernel starts while its predecessor still runs and must wait (`gdc_wait`) before it
reads the predecessor's output or overwrites what the predecessor reads. A missing or
misplaced wait is a race: it shows as replays whose bits differ from the serial launch, or
from each other. Two chains, each several layers deep:

- the MLP half of a decoder layer at batch 1: RMSNorm (with the residual add) ->
  gate_up_proj -> silu_and_mul -> down_proj, the norm and the matmuls PDL kernels
  (`triton_rms_norm.py`, `triton_skinny_gemm.py`), the activation a compiled kernel launched
  without PDL in between; in the graph down_proj leaves its split-K partial sums to the next
  norm, as the engine's does;
- the attention half at batch 3: qkv_proj -> RoPE -> the KV cache write -> paged decode
  attention in four splits -> their merge -> o_proj, every kernel a PDL one; attention reads
  the K/V that the kernel before it wrote (with the RoPE kernel writing the cache itself, as
  in the engine's graphs, or with `reshape_and_cache`, as in its eager steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from minivllm.attention.ops import triton_utils
from minivllm.attention.ops.triton_paged_decode import paged_decode_attention
from minivllm.attention.ops.triton_reshape_and_cache import reshape_and_cache
from minivllm.model_executor.layers.activation import silu_and_mul
from minivllm.model_executor.layers.triton_rms_norm import rms_norm
from minivllm.model_executor.layers.triton_rope import KVCacheWrite, rope_
from minivllm.model_executor.layers.triton_skinny_gemm import (
    PartialSums,
    linear,
    runs_skinny,
    skinny_gemm_partial_sums,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="PDL and CUDA graphs need a CUDA device")

HIDDEN, INTERMEDIATE, LAYERS = 1024, 3072, 8
HEADS, KV_HEADS, HEAD_DIM, BLOCK_SIZE = 16, 8, 128, 16  # Qwen3-0.6B's attention


@pytest.fixture
def pdl_switch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    def switch(on: bool) -> None:
        monkeypatch.setenv("MINIVLLM_NO_PDL", "0" if on else "1")
        triton_utils.use_pdl.cache_clear()

    yield switch
    triton_utils.use_pdl.cache_clear()  # after monkeypatch has restored the environment


def down_proj(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor | PartialSums:
    """As `RowParallelLinear(sum_in_next_norm=True)` on one rank: partial sums in graphs."""
    return skinny_gemm_partial_sums(x, weight) if runs_skinny(x, weight) else linear(x, weight)


def mlp_chain(x: torch.Tensor, weights: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
    hidden: torch.Tensor | PartialSums = x
    residual = torch.zeros_like(x)
    for norm_weight, gate_up, down in weights:
        normed, residual = rms_norm(hidden, norm_weight, 1e-6, residual)
        hidden = down_proj(silu_and_mul(linear(normed, gate_up)), down)
    return rms_norm(hidden, weights[0][0], 1e-6, residual)[0]


def test_pdl_chain_in_graph_matches_serial_launch(
        pdl_switch: Callable[[bool], None], randn: Callable[..., torch.Tensor],
        graph_replays: Callable[..., list[torch.Tensor]]) -> None:
    bf16 = torch.bfloat16
    weights = [(1 + 0.1 * randn(HIDDEN, dtype=bf16),
                randn(2 * INTERMEDIATE, HIDDEN, dtype=bf16) / HIDDEN**0.5,
                randn(HIDDEN, INTERMEDIATE, dtype=bf16) / INTERMEDIATE**0.5)
               for _ in range(LAYERS)]
    x = randn(1, HIDDEN, dtype=bf16)

    def replays(pdl: bool) -> list[torch.Tensor]:
        pdl_switch(pdl)  # in the graph (fused_kernels) `linear` runs the skinny kernel
        return graph_replays(lambda: mlp_chain(x, weights), 20)

    assert triton_utils.use_pdl(x.device) == (torch.cuda.get_device_capability()[0] >= 9)
    serial = replays(pdl=False)
    overlapped = replays(pdl=True)
    assert all(torch.equal(r, serial[0]) for r in serial + overlapped)
    # And the chain is the MLP it claims to be (cuBLAS and PyTorch outside fused_kernels);
    # bf16 roundings differ along eight layers, so compare the whole vector.
    eager = mlp_chain(x, weights).float()
    assert (serial[0].float() - eager).norm() < 0.02 * eager.norm()


def attention_chain(x: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor,
                    layers: list[tuple[torch.Tensor, ...]], slot_mapping: torch.Tensor,
                    block_tables: torch.Tensor, context_lens: torch.Tensor,
                    fused_cache_write: bool) -> torch.Tensor:
    q_size, kv_size = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    hidden = x
    for qkv_weight, o_weight, key_cache, value_cache in layers:
        q, k, v = linear(hidden, qkv_weight).split([q_size, kv_size, kv_size], dim=-1)
        if fused_cache_write:
            rope_(positions, q, k, cos_sin, HEAD_DIM,
                  cache_write=KVCacheWrite(v, key_cache, value_cache, slot_mapping))
        else:
            rope_(positions, q, k, cos_sin, HEAD_DIM)
            reshape_and_cache(k.view(-1, KV_HEADS, HEAD_DIM), v.view(-1, KV_HEADS, HEAD_DIM),
                              key_cache, value_cache, slot_mapping)
        attn = paged_decode_attention(q.view(-1, HEADS, HEAD_DIM), key_cache, value_cache,
                                      block_tables, context_lens, HEAD_DIM**-0.5, num_splits=4)
        hidden = linear(attn.view(-1, q_size), o_weight)
    return hidden


@pytest.mark.parametrize("fused_cache_write", [True, False])
def test_pdl_attention_chain_in_graph_matches_serial_launch(
        fused_cache_write: bool, pdl_switch: Callable[[bool], None],
        randn: Callable[..., torch.Tensor], make_paged_kv: Callable[..., Any],
        graph_replays: Callable[..., list[torch.Tensor]]) -> None:
    bf16 = torch.bfloat16
    context_lens = [300, 77, 512]  # each sequence's new token is its last context position
    kv = make_paged_kv(context_lens, KV_HEADS, HEAD_DIM, BLOCK_SIZE, bf16)
    layers = [(randn((HEADS + 2 * KV_HEADS) * HEAD_DIM, HIDDEN, dtype=bf16) / HIDDEN**0.5,
               randn(HIDDEN, HEADS * HEAD_DIM, dtype=bf16) / HIDDEN**0.5,
               kv.key_cache * (1 + layer), kv.value_cache * (1 + layer))  # a cache per layer
              for layer in range(4)]
    positions = kv.context_lens.long() - 1
    last_block = kv.block_tables.gather(1, (positions // BLOCK_SIZE)[:, None]).squeeze(1)
    slot_mapping = last_block.long() * BLOCK_SIZE + positions % BLOCK_SIZE
    angles = randn(1024, HEAD_DIM // 2)
    cos_sin = torch.cat([angles.cos(), angles.sin()], dim=-1)
    x = randn(len(context_lens), HIDDEN, dtype=bf16)

    def run() -> torch.Tensor:
        return attention_chain(x, positions, cos_sin, layers, slot_mapping, kv.block_tables,
                               kv.context_lens, fused_cache_write)

    def replays(pdl: bool) -> list[torch.Tensor]:
        pdl_switch(pdl)
        return graph_replays(run, 20)

    serial = replays(pdl=False)
    overlapped = replays(pdl=True)
    assert all(torch.equal(r, serial[0]) for r in serial + overlapped)
    assert serial[0].isfinite().all()  # no read of the caches' NaN poison outside the context
    eager = run().float()  # cuBLAS matmuls outside fused_kernels
    assert (serial[0].float() - eager).norm() < 0.02 * eager.norm()
