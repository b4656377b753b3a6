"""CUDA graphs for decode steps (vLLM's `CUDAGraphRunner`, lab 5).

A decode step of a small model is hundreds of tiny kernels; launching them one by one from
Python costs more than running them. A CUDA graph records the whole forward pass once and
replays it with one launch. A graph is frozen: same shapes, same memory addresses. So:

- inputs live in static buffers, and every step copies its batch into them;
- a graph is captured for each of a few batch sizes, and a step with B sequences replays the
  smallest captured size >= B, padding the extra rows (slot -1: K/V not written; context
  length 0: attention outputs zeros);
- block tables are as wide as max_model_len needs, so any context fits.

Only decode-only steps use graphs; prefills vary too much in shape and run eagerly. The torch
attention reference syncs with the host (boolean indexing), so graphs need attention="triton".
"""

from __future__ import annotations

import bisect
import logging
import time

import torch
from torch import nn

from minivllm.attention.metadata import AttentionMetadata
from minivllm.model_executor.layers.compile import fused_kernels

logger = logging.getLogger("minivllm")


def capture_sizes(max_num_seqs: int) -> list[int]:
    """1, 2, 4, then every multiple of 8 up to max_num_seqs (vLLM's default list)."""
    sizes = [1, 2, 4, *range(8, max_num_seqs + 8, 8)]
    return sorted({min(s, max_num_seqs) for s in sizes})


class CUDAGraphRunner:
    def __init__(self, model: nn.Module, kv_caches: list[torch.Tensor], max_num_seqs: int,
                 max_blocks_per_seq: int, max_model_len: int, device: torch.device) -> None:
        self.model = model
        self.kv_caches = kv_caches
        self.sizes = capture_sizes(max_num_seqs)
        self.max_model_len = max_model_len
        n = self.sizes[-1]
        self.input_ids = torch.zeros(n, dtype=torch.long, device=device)
        self.positions = torch.zeros(n, dtype=torch.long, device=device)
        self.slot_mapping = torch.full((n,), -1, dtype=torch.long, device=device)
        self.block_tables = torch.zeros(n, max_blocks_per_seq, dtype=torch.int32, device=device)
        self.context_lens = torch.zeros(n, dtype=torch.int32, device=device)
        self.query_start_loc = torch.zeros(1, dtype=torch.int32, device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}

    @property
    def max_batch_size(self) -> int:
        return self.sizes[-1]

    def _metadata(self, batch_size: int) -> AttentionMetadata:
        return AttentionMetadata(
            slot_mapping=self.slot_mapping[:batch_size],
            block_tables=self.block_tables[:batch_size],
            context_lens=self.context_lens[:batch_size],
            query_start_loc=self.query_start_loc, num_prefills=0, num_prefill_tokens=0,
            num_decode_tokens=batch_size, max_query_len=0, max_context_len=self.max_model_len)

    @torch.inference_mode()
    def capture(self) -> None:
        """Capture one graph per batch size, largest first, all sharing one memory pool, with
        the compiled element-wise kernels (whose per-call host cost a graph does not pay)."""
        start = time.perf_counter()
        free_before = torch.cuda.mem_get_info()[0]
        pool = None
        with fused_kernels():
            for bs in reversed(self.sizes):
                md = self._metadata(bs)
                args = (self.input_ids[:bs], self.positions[:bs], self.kv_caches, md)
                self.model(*args)  # warm-up: Triton compiles and autotunes outside the capture
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    self.outputs[bs] = self.model(*args)
                pool = graph.pool()
                self.graphs[bs] = graph
        torch.cuda.synchronize()
        used = free_before - torch.cuda.mem_get_info()[0]
        logger.info("Graph capturing finished in %.1f s, took %.2f GiB (%d batch sizes, 1 to %d)",
                    time.perf_counter() - start, used / (1 << 30), len(self.sizes), self.sizes[-1])

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, slot_mapping: torch.Tensor,
            block_tables: torch.Tensor, context_lens: torch.Tensor) -> torch.Tensor:
        """Copy a decode batch of B rows into the static buffers, replay, return [B, hidden]."""
        b = input_ids.shape[0]
        bs = self.sizes[bisect.bisect_left(self.sizes, b)]
        self.input_ids[:b].copy_(input_ids, non_blocking=True)
        self.positions[:b].copy_(positions, non_blocking=True)
        self.slot_mapping[:b].copy_(slot_mapping, non_blocking=True)
        self.slot_mapping[b:bs].fill_(-1)
        self.context_lens[:b].copy_(context_lens, non_blocking=True)
        self.context_lens[b:bs].fill_(0)
        width = block_tables.shape[1]
        self.block_tables[:b, :width].copy_(block_tables, non_blocking=True)
        self.graphs[bs].replay()
        return self.outputs[bs][:b]
