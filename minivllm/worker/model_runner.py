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

A step returns without waiting for the GPU: its sampled tokens come back through an
`AsyncModelRunnerOutput`, and with async scheduling the engine prepares the next step before
reading them. A decode whose last token is still a placeholder then takes it from the previous
step's sampled tokens on the GPU, never through the host.
"""

from __future__ import annotations

import functools
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
from minivllm.model_executor.sampling_metadata import SamplingMetadata, async_tensor_h2d
from minivllm.sequence import PLACEHOLDER_TOKEN_ID, Sequence
from minivllm.worker.cache_engine import KVCacheSpec, allocate_kv_caches
from minivllm.worker.cuda_graph import CUDAGraphRunner

logger = logging.getLogger("minivllm")

GiB = 1 << 30

EAGER_TOKEN_MULTIPLE = 128
"""On CUDA, steps with prefills (which run eagerly) are padded to a multiple of this many
tokens. cuBLAS picks a kernel for each matmul shape it meets: on an H200 a call with a shape
it had not seen took ~200 us of host time, one it had ~20 us. Such a step has a new token count
almost every time, and each decoder layer makes 4 matmuls: unpadded, ~113 of them cost ~19 ms
of host time in a ~45 ms step of the throughput benchmark, while the GPU idled. Padding costs
at most 127 tokens of work in steps of up to thousands."""


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

    The copy to the host is queued behind the step's kernels, into page-locked memory, so
    launching a step never waits for the GPU; `get_output()` waits for that copy alone (the
    step's one device-to-host transfer, plus the logprobs when asked for)."""

    def __init__(self, seqs: list[Sequence], sampled: SamplerOutput | None) -> None:
        self.seqs = seqs
        self.sampled_token_ids = None if sampled is None else sampled.sampled_token_ids
        """On the device: where the next step's placeholder tokens are read from."""
        tensors = [] if sampled is None else [sampled.sampled_token_ids]
        if sampled is not None and sampled.logprobs is not None:
            tensors += [sampled.logprob_token_ids, sampled.logprobs, sampled.sampled_token_ranks]
        self._host = [t.to("cpu", non_blocking=True) for t in tensors]
        self._copied = None
        if tensors and tensors[0].is_cuda:
            self._copied = torch.cuda.Event()
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
        md = self._attn_metadata(block_tables, slots, seq_lens, seq_lens,
                                 num_prefills=len(seq_lens))
        input_ids = torch.zeros(num_tokens, dtype=torch.long, device=self.device)
        hidden = self.model(input_ids, torch.tensor(positions, device=self.device), caches, md)
        rows = torch.zeros(self.config.max_num_seqs, dtype=torch.long, device=self.device)
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

        The kernel's split count (`choose_num_splits`) is a compile-time constant picked per
        step from the batch size and the block-table width. Graphs cover decode-only steps, but
        a step that mixes prefills and decodes runs eagerly and may pick a value not compiled
        yet; Triton then stalls that step for about half a second per value (on an H100 that
        was 3 s of the 15 s offline throughput benchmark)."""
        if self.device.type != "cuda" or self.config.attention != "triton":
            return
        from minivllm.attention.layer import Attention
        from minivllm.attention.ops.triton_paged_decode import choose_num_splits
        from minivllm.attention.ops.triton_utils import get_num_sms

        attn = next(m for m in self.model.modules() if isinstance(m, Attention))
        max_blocks = cdiv(self.config.max_model_len, self.block_size)
        num_sms = get_num_sms(self.device)
        # Every batch size, and widths in powers of two (the choice steps at powers of two).
        widths = {max_blocks, *(1 << i for i in range(max_blocks.bit_length()))}
        splits = {choose_num_splits(batch, attn.num_kv_heads, width * self.block_size, num_sms)
                  for batch in range(1, self.config.max_num_seqs + 1) for width in widths}
        query = torch.zeros(1, attn.num_heads, attn.head_size, dtype=self.config.torch_dtype,
                            device=self.device)
        block_tables = torch.zeros(1, max_blocks, dtype=torch.int32, device=self.device)
        context_lens = torch.ones(1, dtype=torch.int32, device=self.device)
        key_cache, value_cache = self.kv_caches[0][0], self.kv_caches[0][1]
        for num_splits in sorted(splits):
            attn.ops.paged_decode_attention(query, key_cache, value_cache, block_tables,
                                            context_lens, attn.scale, num_splits=num_splits)
        torch.cuda.synchronize()

    def capture_cuda_graphs(self) -> None:
        """Record decode graphs (CUDA, Triton attention, unless enforce_eager)."""
        if (self.device.type != "cuda" or self.config.enforce_eager
                or self.config.attention != "triton"):
            return
        self.cuda_graphs = CUDAGraphRunner(
            self.model, self.kv_caches, self.config.max_num_seqs,
            cdiv(self.config.max_model_len, self.block_size), self.config.max_model_len,
            self.device)
        self.cuda_graphs.capture()

    # -- every step ----------------------------------------------------------------------------
    def padded_num_tokens(self, num_tokens: int) -> int:
        """A step with prefills of `num_tokens` tokens runs this many (EAGER_TOKEN_MULTIPLE)."""
        return cdiv(num_tokens, self.token_multiple) * self.token_multiple

    def _attn_metadata(self, block_tables: list[list[int]], slot_mapping: list[int],
                       query_lens: list[int], context_lens: list[int],
                       num_prefills: int) -> AttentionMetadata:
        # Filled row by row into numpy: a nested Python list would be converted element by
        # element (about 1 ms for 256 sequences of 64 blocks, every step).
        width = max((len(t) for t in block_tables), default=1) or 1
        padded = np.zeros((len(block_tables), width), dtype=np.int32)
        for row, table in enumerate(block_tables):
            padded[row, :len(table)] = table
        prefill_lens = query_lens[:num_prefills]
        starts = [0]
        for n in prefill_lens:
            starts.append(starts[-1] + n)
        dev = self.device
        return AttentionMetadata(
            slot_mapping=async_tensor_h2d(slot_mapping, torch.long, dev),
            block_tables=async_tensor_h2d(padded, torch.int32, dev),
            context_lens=async_tensor_h2d(context_lens, torch.int32, dev),
            query_start_loc=async_tensor_h2d(starts, torch.int32, dev),
            num_prefills=num_prefills,
            num_prefill_tokens=starts[-1],
            num_decode_tokens=sum(query_lens[num_prefills:]),
            max_query_len=max(prefill_lens, default=0),
            max_context_len=max(context_lens, default=0),
        )

    def prepare_inputs(self, scheduled: list[ScheduledSequence],
                       kv_cache_manager: KVCacheManager) -> ModelInput:
        """Flatten the scheduled sequences (prefills first) into one batch of tokens."""
        input_ids: list[int] = []
        positions: list[int] = []
        slot_mapping: list[int] = []
        block_tables, query_lens, context_lens = [], [], []
        logits_indices: list[int] = []
        seqs_to_sample: list[Sequence] = []
        from_prev: list[tuple[int, int]] = []
        """(row of input_ids, row of the previous step's sampled tokens) for placeholders."""
        num_prefills = 0
        for s in scheduled:
            seq = s.seq
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + s.num_new_tokens
            if not s.is_prefill:  # a decode: skip building the token list
                token_id = seq.last_token_id
                if token_id == PLACEHOLDER_TOKEN_ID:  # sampled by the step still in flight
                    from_prev.append((len(input_ids), self.prev_output.rows[seq.seq_id]))
                input_ids.append(token_id)
            else:
                input_ids += seq.all_token_ids[start:end]
            positions += range(start, end)
            slot_mapping += kv_cache_manager.slot_mapping(seq, start, end)
            block_tables.append(seq.block_table[: cdiv(end, self.block_size)])
            query_lens.append(end - start)
            context_lens.append(end)
            num_prefills += s.is_prefill
            if s.samples:
                logits_indices.append(len(input_ids) - 1)
                seqs_to_sample.append(seq)
        if num_prefills:  # padding tokens as in CUDA graphs: slot -1, never sampled
            num_padding = self.padded_num_tokens(len(input_ids)) - len(input_ids)
            input_ids += [0] * num_padding
            positions += [0] * num_padding
            slot_mapping += [-1] * num_padding
        dev = self.device
        input_ids_tensor = async_tensor_h2d(input_ids, torch.long, dev)
        if from_prev:  # a gather on the device, queued behind the step that samples them
            rows = async_tensor_h2d(from_prev, torch.long, dev)
            input_ids_tensor[rows[:, 0]] = self.prev_output.sampled_token_ids[rows[:, 1]]
        return ModelInput(
            input_ids=input_ids_tensor,
            positions=async_tensor_h2d(positions, torch.long, dev),
            attn_metadata=self._attn_metadata(block_tables, slot_mapping, query_lens,
                                              context_lens, num_prefills),
            logits_indices=async_tensor_h2d(logits_indices, torch.long, dev),
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
        if graphs is not None and md.num_prefills == 0 and (
                md.num_decode_tokens <= graphs.max_batch_size):
            hidden = graphs.run(inputs.input_ids, inputs.positions, md.slot_mapping,
                                md.block_tables, md.context_lens)
        else:
            hidden = self.model(inputs.input_ids, inputs.positions, self.kv_caches, md)
        seqs = inputs.seqs_to_sample
        if inputs.logits_indices.numel() == 0:
            return AsyncModelRunnerOutput([], None)
        logits = self.model.compute_logits(hidden[inputs.logits_indices])
        if logits is None:  # a tensor-parallel worker: it sent its slice to the driver
            return AsyncModelRunnerOutput([], None)
        md = SamplingMetadata.from_sequences(seqs, self.vocab_size, self.device)
        self.prev_output = AsyncModelRunnerOutput(seqs, self.sampler(logits, md))
        return self.prev_output
