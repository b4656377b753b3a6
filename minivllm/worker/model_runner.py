"""ModelRunner: turn the scheduler's decision into tensors, run the model, sample.

vLLM's `GPUModelRunner`. One step's sequences are flattened into one batch of tokens:

    input_ids     the tokens to run: a prefill's prompt chunk, or a decode's last sampled token
    positions     each token's position in its sequence (for RoPE)
    slot_mapping  each token's KV cache slot (where its K/V are written)
    block_tables  each sequence's physical blocks (where its context's K/V are read)
    context_lens  each sequence's length once this step's K/V are written

Only the last token of a sequence that reaches the end of its known tokens is sampled
(`logits_indices`), so the LM head runs on one row per sampled sequence, not on every prompt
token.

These are built as Python lists, written into persistent page-locked buffers with numpy and
sent to the GPU in one copy (`input_buffers.py`, vLLM's `CpuGpuBuffer`s): per step, the host
time is the per-sequence Python work, not one allocation and transfer per tensor.

A step returns without waiting for the GPU: its sampled tokens come back through an
`AsyncModelRunnerOutput`, and with async scheduling the engine prepares the next step before
reading them. A decode whose last token is still a placeholder then takes it from the previous
step's sampled tokens on the GPU, never through the host.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from minivllm.attention.metadata import AttentionMetadata
from minivllm.config import EngineConfig
from minivllm.core.kv_cache_manager import KVCacheManager, cdiv
from minivllm.core.scheduler import ScheduledSequence, SchedulerOutput
from minivllm.model_executor.sampler import Sampler, SamplerOutput
from minivllm.model_executor.sampling_metadata import SamplingMetadata
from minivllm.sequence import PLACEHOLDER_TOKEN_ID, Sequence
from minivllm.worker.cache_engine import KVCacheSpec, allocate_kv_caches
from minivllm.worker.cuda_graph import CUDAGraphRunner
from minivllm.worker.input_buffers import ALIGNMENT, InputBuffers, StagedModelInputs

logger = logging.getLogger("minivllm")

GiB = 1 << 30

EAGER_TOKEN_MULTIPLE = 128
"""On CUDA, steps with prefills (which run eagerly) are padded to a multiple of this many
tokens. cuBLAS picks a kernel for each matmul shape it meets: on an H200 a call with a shape
it had not seen took ~200 us of host time, one it had ~20 us. Such a step has a new token count
almost every time, and each decoder layer makes 4 matmuls: unpadded, ~113 of them cost ~19 ms
of host time in a ~45 ms step of the throughput benchmark, while the GPU idled. Padding costs
at most 127 tokens of work in steps of up to thousands."""


def padded_block_tables(block_tables: list[list[int]]) -> np.ndarray:
    """[num_seqs, longest table] int32, padded with 0. Made from one flat list: numpy converts
    a list at ~13 ns per int, while a row assigned on its own costs a microsecond more."""
    width = max(map(len, block_tables)) or 1
    flat: list[int] = []
    for table in block_tables:
        flat += table
        if len(table) < width:
            flat += [0] * (width - len(table))
    return np.array(flat, dtype=np.int32).reshape(len(block_tables), width)


@dataclass
class ModelInput:
    input_ids: torch.Tensor
    positions: torch.Tensor
    attn_metadata: AttentionMetadata
    logits_indices: torch.Tensor
    """Rows of the hidden states whose next token is sampled."""
    seqs_to_sample: list[Sequence]


@dataclass
class SampleResult:
    seq: Sequence
    token_id: int
    logprob_token_ids: list[int] | None = None
    """The sampled token first, then the top-k alternatives (when logprobs were asked for)."""
    logprobs: list[float] | None = None
    rank: int | None = None


class AsyncModelRunnerOutput:
    """A step's sampled tokens on their way to the host (vLLM v1's `AsyncModelRunnerOutput`).

    The copy to the host waits for the sampler, into page-locked memory, so launching a step
    never waits for the GPU; `get_output()` waits for that copy alone (the step's one
    device-to-host transfer, plus the logprobs when asked for).

    On CUDA the copy runs on a stream of its own (`copy_stream`, vLLM's
    `async_output_copy_stream`). On the compute stream it would sit between this step's sampler
    and the next step's input copy and graph, which need only the sampled ids on the device:
    every step would wait for a transfer to the host that only the host waits for."""

    def __init__(self, seqs: list[Sequence], sampled: SamplerOutput | None,
                 copy_stream: torch.cuda.Stream | None = None) -> None:
        self.seqs = seqs
        self.sampled_token_ids = None if sampled is None else sampled.sampled_token_ids
        """On the device: where the next step's placeholder tokens are read from."""
        tensors = [] if sampled is None else [sampled.sampled_token_ids]
        if sampled is not None and sampled.logprobs is not None:
            tensors += [sampled.logprob_token_ids, sampled.logprobs, sampled.sampled_token_ranks]
        self._copied: torch.cuda.Event | None = None
        self._device: list[torch.Tensor] | None = None
        """Kept until the copy has read them: the compute stream may reuse freed memory."""
        if tensors and copy_stream is not None:
            copy_stream.wait_stream(torch.cuda.current_stream())  # for the sampler
            self._device, self._copied = tensors, torch.cuda.Event()
        with torch.cuda.stream(copy_stream if self._device else None):  # None: no switch (CPU)
            self._host = [t.to("cpu", non_blocking=True) for t in tensors]
            if self._copied is not None:
                self._copied.record()
        self._results: list[SampleResult] | None = None

    @functools.cached_property
    def rows(self) -> dict[int, int]:
        """seq_id -> its row of `sampled_token_ids` (built only if a placeholder asks)."""
        return {seq.seq_id: row for row, seq in enumerate(self.seqs)}

    def get_output(self) -> list[SampleResult]:
        """Wait for the copy (the first call only) and return one result per sampled row."""
        if self._results is None:
            if self._copied is not None:
                self._copied.synchronize()
                self._device = None
            self._results = self._to_results()
        return self._results

    def _to_results(self) -> list[SampleResult]:
        if not self._host:
            return []
        token_ids = self._host[0].tolist()
        if len(self._host) == 1:
            return [SampleResult(seq, tok) for seq, tok in zip(self.seqs, token_ids, strict=True)]
        ids, lps, ranks = (t.tolist() for t in self._host[1:])
        return [SampleResult(seq, tok, ids[i], lps[i], ranks[i])
                for i, (seq, tok) in enumerate(zip(self.seqs, token_ids, strict=True))]


class ModelRunner:
    def __init__(self, config: EngineConfig, model: nn.Module, model_config) -> None:
        self.config = config
        self.model = model
        self.model_config = model_config
        self.device = torch.device(config.device)
        self.vocab_size = model_config.vocab_size
        self.block_size = config.block_size
        self.sampler = Sampler()
        self.kv_cache_spec = KVCacheSpec.from_model_config(
            model_config, config.block_size, config.torch_dtype, config.tensor_parallel_size)
        self.kv_caches: list[torch.Tensor] = []
        self.cuda_graphs: CUDAGraphRunner | None = None
        self.token_multiple = EAGER_TOKEN_MULTIPLE if self.device.type == "cuda" else 1
        """Steps with prefills are padded to a multiple of this many tokens."""
        self.max_blocks_per_seq = cdiv(config.max_model_len, config.block_size)
        self.input_buffers = InputBuffers(self.input_buffer_bytes(), self.device)
        self.output_copy_stream = (torch.cuda.Stream(self.device) if self.device.type == "cuda"
                                   else None)
        """Where sampled tokens are copied to the host (`AsyncModelRunnerOutput`)."""
        self.prev_output: AsyncModelRunnerOutput | None = None
        """The last step's output: its sampled tokens feed the next step's placeholders (vLLM:
        `prev_sampled_token_ids`)."""

    # -- start-up: size and allocate the KV cache ---------------------------------------------
    def determine_num_blocks(self) -> int:
        """How many KV blocks fit (vLLM: `determine_num_available_blocks`)."""
        if self.config.num_gpu_blocks_override is not None:
            return self.config.num_gpu_blocks_override
        spec = self.kv_cache_spec
        if self.device.type != "cuda":
            return int(self.config.cpu_kv_cache_space * GiB) // spec.bytes_per_block
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        dummy_cache_bytes = self.profile_run()
        peak = torch.cuda.max_memory_allocated() - dummy_cache_bytes
        free, total = torch.cuda.mem_get_info()
        # Memory other processes hold counts against the budget too (as in vLLM).
        used_by_others = total - free - torch.cuda.memory_reserved()
        budget = total * self.config.gpu_memory_utilization - used_by_others - peak
        num_blocks = int(budget // spec.bytes_per_block)
        logger.info("Memory profiling: weights and peak activations %.2f GiB, KV cache budget "
                    "%.2f GiB (gpu_memory_utilization=%.2f of %.2f GiB)", peak / GiB,
                    max(budget, 0) / GiB, self.config.gpu_memory_utilization, total / GiB)
        torch.cuda.empty_cache()
        if num_blocks <= 0:
            raise ValueError("No memory is left for the KV cache: increase "
                             "gpu_memory_utilization or lower max_num_batched_tokens")
        return num_blocks

    @torch.inference_mode()
    def profile_run(self) -> int:
        """Run the largest batch the scheduler can build (max_num_batched_tokens prompt tokens,
        max_num_seqs sampled rows) on a throwaway cache; return that cache's size in bytes."""
        num_tokens = self.padded_num_tokens(self.config.max_num_batched_tokens)
        max_len = self.config.max_model_len
        seq_lens = [max_len] * (num_tokens // max_len) + ([num_tokens % max_len]
                                                          if num_tokens % max_len else [])
        num_blocks = sum(cdiv(n, self.block_size) for n in seq_lens)
        caches = allocate_kv_caches(self.kv_cache_spec, num_blocks, self.device)
        block_tables, slots, positions, next_block = [], [], [], 0
        for n in seq_lens:
            nb = cdiv(n, self.block_size)
            block_tables.append(list(range(next_block, next_block + nb)))
            slots += range(next_block * self.block_size, next_block * self.block_size + n)
            positions += range(n)
            next_block += nb
        dev = self.device
        md = AttentionMetadata(
            slot_mapping=torch.tensor(slots, device=dev),
            block_tables=torch.from_numpy(padded_block_tables(block_tables)).to(dev),
            context_lens=torch.tensor(seq_lens, dtype=torch.int32, device=dev),
            query_start_loc=torch.tensor([0, *itertools.accumulate(seq_lens)],
                                         dtype=torch.int32, device=dev),
            num_prefills=len(seq_lens), num_prefill_tokens=num_tokens, num_decode_tokens=0,
            max_query_len=max(seq_lens), max_context_len=max(seq_lens))
        input_ids = torch.zeros(num_tokens, dtype=torch.long, device=dev)
        hidden = self.model(input_ids, torch.tensor(positions, device=dev), caches, md)
        rows = torch.zeros(self.config.max_num_seqs, dtype=torch.long, device=dev)
        self.model.compute_logits(hidden[rows])
        torch.cuda.synchronize()
        size = sum(c.nbytes for c in caches)
        del caches, hidden
        return size

    def init_kv_cache(self, num_blocks: int) -> None:
        start = time.perf_counter()
        self.kv_caches = allocate_kv_caches(self.kv_cache_spec, num_blocks, self.device)
        # Sized from the tensors, not KVCacheSpec's arithmetic (lab 0), so that a fixed
        # num_gpu_blocks_override runs before lab 0 is done.
        logger.info("Allocated KV cache: %d blocks x %d tokens, %.2f GiB, in %.2f s", num_blocks,
                    self.block_size, sum(c.nbytes for c in self.kv_caches) / GiB,
                    time.perf_counter() - start)

    @torch.inference_mode()
    def warm_up_attention(self) -> None:
        """Compile every variant of the Triton decode kernel now, not in the middle of serving
        (vLLM warms up its kernels at start-up too: `compile_or_warm_up_model`).

        The kernel's split count (`choose_num_splits`) and tile width are compile-time
        constants picked per step from the batch size and the block-table width. Graphs cover
        decode-only steps, but a step that mixes prefills and decodes runs eagerly and may pick
        a variant not compiled yet; Triton then stalls that step for about half a second per
        variant (on an H100 that was 3 s of the 15 s offline throughput benchmark). So the
        kernel runs here once for every batch size and for block tables of every power-of-two
        width (the choices change at powers of two), on a context of one token: a few thousand
        launches of well under a millisecond of GPU time in all."""
        if self.device.type != "cuda" or self.config.attention != "triton":
            return
        from minivllm.attention.layer import Attention

        attn = next(m for m in self.model.modules() if isinstance(m, Attention))
        max_blocks = self.max_blocks_per_seq
        widths = sorted({max_blocks, *(1 << i for i in range(max_blocks.bit_length()))})
        seqs = self.config.max_num_seqs
        query = torch.zeros(seqs, attn.num_heads, attn.head_size, dtype=self.config.torch_dtype,
                            device=self.device)
        block_tables = torch.zeros(seqs, max_blocks, dtype=torch.int32, device=self.device)
        context_lens = torch.ones(seqs, dtype=torch.int32, device=self.device)
        key_cache, value_cache = self.kv_caches[0][0], self.kv_caches[0][1]
        for batch in range(1, seqs + 1):
            for width in widths:
                attn.ops.paged_decode_attention(query[:batch], key_cache, value_cache,
                                                block_tables[:batch, :width],
                                                context_lens[:batch], attn.scale)
        torch.cuda.synchronize()

    def capture_cuda_graphs(self) -> None:
        """Record decode graphs (CUDA, Triton attention, unless enforce_eager)."""
        if (self.device.type != "cuda" or self.config.enforce_eager
                or self.config.attention != "triton"):
            return
        self.cuda_graphs = CUDAGraphRunner(
            self.model, self.kv_caches, self.input_buffers, self.config.max_num_seqs,
            self.max_blocks_per_seq, self.config.max_model_len)
        self.cuda_graphs.capture()

    # -- every step ----------------------------------------------------------------------------
    def padded_num_tokens(self, num_tokens: int) -> int:
        """A step with prefills of `num_tokens` tokens runs this many (EAGER_TOKEN_MULTIPLE)."""
        return cdiv(num_tokens, self.token_multiple) * self.token_multiple

    def input_buffer_bytes(self) -> int:
        """Room in the input buffers for the largest step: int64 token ids, positions and slots
        (up to max_num_batched_tokens, padded), sampled rows and placeholder rows; int32 block
        tables, context lengths and prefill starts (up to max_num_seqs rows); and the
        alignment of 8 arrays. Padding to any multiple up to EAGER_TOKEN_MULTIPLE fits."""
        seqs = self.config.max_num_seqs
        tokens = max(self.config.max_num_batched_tokens + EAGER_TOKEN_MULTIPLE, seqs)
        int64s = 3 * tokens + 3 * seqs
        int32s = seqs * self.max_blocks_per_seq + 2 * seqs + 1
        return 8 * int64s + 4 * int32s + 8 * ALIGNMENT

    def prepare_inputs(self, scheduled: list[ScheduledSequence],
                       kv_cache_manager: KVCacheManager) -> ModelInput:
        """Flatten the scheduled sequences (prefills first) into one batch of tokens, staged in
        the input buffers and sent to the device in one copy."""
        block_size = self.block_size
        input_ids: list[int] = []
        positions: list[int] = []
        slot_mapping: list[int] = []
        block_tables: list[list[int]] = []
        context_lens: list[int] = []
        prefill_lens: list[int] = []
        logits_indices: list[int] = []
        seqs_to_sample: list[Sequence] = []
        placeholder_rows: list[int] = []
        """Rows of input_ids whose token the previous step is still sampling..."""
        prev_rows: list[int] = []
        """...and their rows in that step's sampled tokens."""
        for s in scheduled:
            seq = s.seq
            start = seq.num_computed_tokens
            end = start + s.num_new_tokens
            if s.is_prefill:
                input_ids += seq.all_token_ids[start:end]
                positions += range(start, end)
                prefill_lens.append(end - start)
            else:  # a decode: one token, no token list to build
                token_id = seq.last_token_id
                if token_id == PLACEHOLDER_TOKEN_ID:  # sampled by the step still in flight
                    placeholder_rows.append(len(input_ids))
                    prev_rows.append(self.prev_output.rows[seq.seq_id])
                input_ids.append(token_id)
                positions.append(start)
            slot_mapping += kv_cache_manager.slot_mapping(seq, start, end)
            num_blocks = cdiv(end, block_size)
            table = seq.block_table
            block_tables.append(table if len(table) == num_blocks else table[:num_blocks])
            context_lens.append(end)
            if s.samples:
                logits_indices.append(len(input_ids) - 1)
                seqs_to_sample.append(seq)

        # Stage everything in the input buffers and send it in one copy (input_buffers.py).
        num_tokens, num_seqs, num_prefills = len(input_ids), len(context_lens), len(prefill_lens)
        tables = padded_block_tables(block_tables)
        graphs = self.cuda_graphs
        graph_size = (None if graphs is None
                      else graphs.padded_batch_size(num_prefills, num_seqs - num_prefills))
        buffers = self.input_buffers
        buffers.begin_step()
        if graph_size is None:  # prefills run padded tokens (EAGER_TOKEN_MULTIPLE), decodes not
            num_run = self.padded_num_tokens(num_tokens) if num_prefills else num_tokens
            staged = StagedModelInputs.reserve(buffers, num_run, num_seqs, tables.shape[1])
        else:  # in the graph's own inputs, padded to its batch size
            num_run = num_tokens
            staged = StagedModelInputs.reserve(buffers, graph_size, graph_size,
                                               self.max_blocks_per_seq)
        staged.write(input_ids, positions, slot_mapping, tables, context_lens)
        query_start_loc = buffers.stage([0, *itertools.accumulate(prefill_lens)], torch.int32)
        sampled_rows = buffers.stage(logits_indices, torch.int64)
        if placeholder_rows:
            dst_rows = buffers.stage(placeholder_rows, torch.int64)
            src_rows = buffers.stage(prev_rows, torch.int64)
        buffers.copy_to_device()

        ids, pos, slots, tables_tensor, lens = staged.device_tensors(num_run, num_seqs,
                                                                     tables.shape[1])
        if placeholder_rows:  # a gather on the device, queued behind the step that samples them
            ids[dst_rows.device] = self.prev_output.sampled_token_ids[src_rows.device]
        return ModelInput(
            input_ids=ids,
            positions=pos,
            attn_metadata=AttentionMetadata(
                slot_mapping=slots,
                block_tables=tables_tensor,
                context_lens=lens,
                query_start_loc=query_start_loc.device,
                num_prefills=num_prefills,
                num_prefill_tokens=sum(prefill_lens),
                num_decode_tokens=num_seqs - num_prefills,
                max_query_len=max(prefill_lens, default=0),
                max_context_len=max(context_lens, default=0),
            ),
            logits_indices=sampled_rows.device,
            seqs_to_sample=seqs_to_sample,
        )

    @torch.inference_mode()
    def execute_model(self, out: SchedulerOutput,
                      kv_cache_manager: KVCacheManager) -> AsyncModelRunnerOutput:
        return self.execute_model_input(self.prepare_inputs(out.scheduled, kv_cache_manager))

    @torch.inference_mode()
    def execute_model_input(self, inputs: ModelInput) -> AsyncModelRunnerOutput:
        """Model and sampler on a prepared batch, launched without waiting for the GPU. With
        tensor parallelism every rank runs this on the inputs the driver (rank 0) broadcast;
        only the driver gets logits and samples."""
        md = inputs.attn_metadata
        graphs = self.cuda_graphs
        if graphs is not None and graphs.padded_batch_size(md.num_prefills,
                                                           md.num_decode_tokens) is not None:
            hidden = graphs.run(inputs.input_ids, inputs.positions, md.slot_mapping,
                                md.block_tables, md.context_lens)
        else:
            hidden = self.model(inputs.input_ids, inputs.positions, self.kv_caches, md)
        seqs = inputs.seqs_to_sample
        num_sampled = inputs.logits_indices.shape[0]
        # The sampled rows are distinct and in order: as many as `hidden` has (every row of a
        # decode-only step) means all of them, and no gather is needed.
        if 0 < num_sampled < hidden.shape[0]:
            hidden = hidden[inputs.logits_indices]
        self.input_buffers.inputs_read()  # the LM head and sampler read no input
        if num_sampled == 0:
            return AsyncModelRunnerOutput([], None)
        logits = self.model.compute_logits(hidden)
        if logits is None:  # a tensor-parallel worker: it sent its slice to the driver
            return AsyncModelRunnerOutput([], None)
        md = SamplingMetadata.from_sequences(seqs, self.vocab_size, self.device)
        self.prev_output = AsyncModelRunnerOutput(seqs, self.sampler(logits, md),
                                                  self.output_copy_stream)
        return self.prev_output
