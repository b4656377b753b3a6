"""CUDA graphs for decode steps (vLLM's `CUDAGraphRunner`, lab 5).

A decode step of a small model is hundreds of tiny kernels; launching them one by one from
Python costs more than running them. A CUDA graph records the whole forward pass once and
replays it with one launch. A graph is frozen: same shapes, same memory addresses. So:

- inputs live in static buffers: a decode step stages its batch right there, so the step's
  one input copy fills them (`input_buffers.py`) and a replay needs no copy of its own;
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

import numpy as np
import torch
from torch import nn

from minivllm.attention.metadata import AttentionMetadata
from minivllm.model_executor.layers.compile import fused_kernels
from minivllm.worker.input_buffers import InputBuffers, StagedModelInputs

logger = logging.getLogger("minivllm")


def capture_sizes(max_num_seqs: int) -> list[int]:
    """1, 2, 4, then every multiple of 8 up to max_num_seqs (vLLM's default list)."""
    sizes = [1, 2, 4, *range(8, max_num_seqs + 8, 8)]
    return sorted({min(s, max_num_seqs) for s in sizes})


class CUDAGraphRunner:
    def __init__(self, model: nn.Module, kv_caches: list[torch.Tensor], buffers: InputBuffers,
                 max_num_seqs: int, max_blocks_per_seq: int, max_model_len: int) -> None:
        self.model = model
        self.kv_caches = kv_caches
        self.buffers = buffers
        self.sizes = capture_sizes(max_num_seqs)
        self.max_blocks_per_seq = max_blocks_per_seq
        self.max_model_len = max_model_len
        self.inputs: dict[int, StagedModelInputs] = {}
        """Each graph's static inputs: where a decode step of its batch size stages its batch."""
        self.query_start_loc = torch.zeros(1, dtype=torch.int32,
                                           device=buffers.device_buffer.device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}

    @property
    def max_batch_size(self) -> int:
        return self.sizes[-1]

    def padded_batch_size(self, num_prefills: int, num_decodes: int) -> int | None:
        """The graph batch size a step replays (the smallest captured size >= its decodes), or
        None when it runs eagerly (it has prefills, or more decodes than the largest graph)."""
        if num_prefills or num_decodes > self.max_batch_size:
            return None
        return self.sizes[bisect.bisect_left(self.sizes, num_decodes)]

    def _metadata(self, batch_size: int) -> AttentionMetadata:
        inputs = self.inputs[batch_size]
        return AttentionMetadata(
            slot_mapping=inputs.slot_mapping.device, block_tables=inputs.block_tables.device,
            context_lens=inputs.context_lens.device,
            query_start_loc=self.query_start_loc, num_prefills=0, num_prefill_tokens=0,
            num_decode_tokens=batch_size, max_query_len=0, max_context_len=self.max_model_len)

    def stage_padding(self, batch_size: int) -> StagedModelInputs:
        """Reserve the static inputs of a graph (as a step of `batch_size` decodes does) and
        fill them with padding (slot -1, context length 0), so that running the model on them
        writes no K/V."""
        self.buffers.begin_step()
        inputs = StagedModelInputs.reserve(self.buffers, batch_size, batch_size,
                                           self.max_blocks_per_seq)
        inputs.write([], [], [], np.zeros((0, 1), dtype=np.int32), [])
        self.buffers.copy_to_device()
        self.inputs[batch_size] = inputs
        return inputs

    @torch.inference_mode()
    def capture(self) -> None:
        """Capture one graph per batch size, largest first, all sharing one memory pool, with
        the compiled element-wise kernels (whose per-call host cost a graph does not pay)."""
        start = time.perf_counter()
        free_before = torch.cuda.mem_get_info()[0]
        pool = None
        with fused_kernels():
            for bs in reversed(self.sizes):
                inputs = self.stage_padding(bs)
                args = (inputs.input_ids.device, inputs.positions.device, self.kv_caches,
                        self._metadata(bs))
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
        """Replay the graph for a decode batch of B rows; return [B, hidden].

        The driver's `prepare_inputs` staged the batch in the graph's own inputs (the tensors
        given here are views of them): nothing to copy. A tensor-parallel worker received its
        inputs by broadcast and copies them in, padding the rows up to the graph's size."""
        b = input_ids.shape[0]
        bs = self.padded_batch_size(0, b)
        static = self.inputs[bs]
        if not static.holds(input_ids, positions, slot_mapping, block_tables, context_lens):
            static.input_ids.device[:b].copy_(input_ids)
            static.positions.device[:b].copy_(positions)
            static.slot_mapping.device[:b].copy_(slot_mapping)
            static.slot_mapping.device[b:].fill_(-1)
            static.context_lens.device[:b].copy_(context_lens)
            static.context_lens.device[b:].fill_(0)
            static.block_tables.device[:b, :block_tables.shape[1]].copy_(block_tables)
        self.graphs[bs].replay()
        return self.outputs[bs][:b]
