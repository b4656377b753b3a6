"""The model runner's input buffers (minivllm/worker/input_buffers.py): every step's tensors
equal the plain lists they are made of, reusing the buffers never changes an earlier step's
result, and the CUDA-graph layout (a decode batch staged in the graph's own inputs, padded to
its batch size) gives the eager path's tokens. On a CPU the graphs are stood in for by an
eager replay of the model on the graph's static inputs; tests/test_gpu.py runs the real ones.
Every test here runs on a GPU too, where the reuse test holds the GPU busy."""

import random

import pytest
import torch

from benchmarks.decode_step.bench_decode_step import synthetic_decode_batch
from minivllm import LLM, SamplingParams
from minivllm.core.kv_cache_manager import cdiv
from minivllm.sequence import PLACEHOLDER_TOKEN_ID
from minivllm.worker.cuda_graph import CUDAGraphRunner
from minivllm.worker.input_buffers import InputBuffers

MODEL = "random:tiny-llama"
FP32 = {"dtype": "float32", "num_gpu_blocks_override": 256}
GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)


def random_prompts(num: int, seed: int, max_len: int = 40) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(500) for _ in range(rng.randint(3, max_len))] for _ in range(num)]


def reference_inputs(runner, scheduled, kv) -> dict[str, torch.Tensor]:
    """A step's tensors made the plain way, one Python list each (as prepare_inputs made them
    before the input buffers)."""
    bs = runner.block_size
    prev = runner.prev_output
    ids, positions, slots, tables, context_lens, starts, sampled = [], [], [], [], [], [0], []
    for s in scheduled:
        seq = s.seq
        start, end = seq.num_computed_tokens, seq.num_computed_tokens + s.num_new_tokens
        for token in seq.all_token_ids[start:end]:
            ids.append(token if token != PLACEHOLDER_TOKEN_ID
                       else prev.sampled_token_ids[prev.rows[seq.seq_id]].item())
        positions += range(start, end)
        slots += kv.slot_mapping(seq, start, end)
        tables.append(seq.block_table[:cdiv(end, bs)])
        context_lens.append(end)
        if s.is_prefill:
            starts.append(starts[-1] + end - start)
        if s.samples:
            sampled.append(len(ids) - 1)
    if len(starts) > 1:  # steps with prefills are padded
        pad = runner.padded_num_tokens(len(ids)) - len(ids)
        ids, positions, slots = ids + [0] * pad, positions + [0] * pad, slots + [-1] * pad
    width = max(map(len, tables))
    return {"input_ids": torch.tensor(ids), "positions": torch.tensor(positions),
            "slot_mapping": torch.tensor(slots),
            "block_tables": torch.tensor([t + [0] * (width - len(t)) for t in tables],
                                         dtype=torch.int32),
            "context_lens": torch.tensor(context_lens, dtype=torch.int32),
            "query_start_loc": torch.tensor(starts, dtype=torch.int32),
            "logits_indices": torch.tensor(sampled)}


def test_every_step_stages_what_plain_lists_give():
    """Mixed prefill/decode steps (chunked prefill), padded steps, placeholders of async
    scheduling and prefix-cache hits: each tensor equals the plain one, dtype and shape too."""
    llm = LLM(MODEL, **FP32, max_model_len=128, enable_chunked_prefill=True,
              max_num_batched_tokens=40, async_scheduling=True, enable_prefix_caching=True)
    runner = llm.llm_engine.model_runner
    runner.token_multiple = 24
    prepare_inputs = runner.prepare_inputs
    seen = {"mixed": 0, "placeholders": 0, "padded": 0}

    def checked_prepare_inputs(scheduled, kv_cache_manager):
        expected = reference_inputs(runner, scheduled, kv_cache_manager)
        inputs = prepare_inputs(scheduled, kv_cache_manager)
        md = inputs.attn_metadata
        got = {"input_ids": inputs.input_ids, "positions": inputs.positions,
               "slot_mapping": md.slot_mapping, "block_tables": md.block_tables,
               "context_lens": md.context_lens, "query_start_loc": md.query_start_loc,
               "logits_indices": inputs.logits_indices}
        for name, tensor in expected.items():
            assert got[name].dtype == tensor.dtype and torch.equal(got[name].cpu(), tensor), name
        assert md.num_prefills == len(expected["query_start_loc"]) - 1
        assert md.num_prefill_tokens == expected["query_start_loc"][-1]
        assert md.num_decode_tokens == len(scheduled) - md.num_prefills
        assert md.max_context_len == max(expected["context_lens"].tolist())
        assert inputs.seqs_to_sample == [s.seq for s in scheduled if s.samples]
        seen["mixed"] += md.num_prefills > 0 and md.num_decode_tokens > 0
        seen["placeholders"] += any(s.seq.last_token_id == PLACEHOLDER_TOKEN_ID
                                    for s in scheduled if not s.is_prefill)
        seen["padded"] += bool((md.slot_mapping == -1).any())
        return inputs

    runner.prepare_inputs = checked_prepare_inputs
    prompts = random_prompts(8, seed=0)
    prompts[3] = prompts[2] + [7, 8, 9]  # a prefix-cache hit
    llm.generate([{"prompt_token_ids": p} for p in prompts], GREEDY, use_tqdm=False)
    assert all(seen.values()), seen


def test_reusing_the_buffers_leaves_a_launched_step_alone():
    """Step b is prepared (rewriting the buffers) while step a may still be queued: both must
    still give the tokens they give one at a time. On CUDA the GPU is first held busy, so that
    a's input copy is still pending when b is prepared: run on a GPU, this is the real check of
    `InputBuffers.begin_step`'s wait."""
    llm = LLM(MODEL, **FP32, max_model_len=96)
    runner, kv = llm.llm_engine.model_runner, llm.llm_engine.kv_cache_manager
    a = synthetic_decode_batch(llm, 3, 20)
    b = synthetic_decode_batch(llm, 5, 41)

    def tokens(output) -> list[int]:
        return [r.token_id for r in output.get_output()]

    expected_a = tokens(runner.execute_model(a, kv))
    expected_b = tokens(runner.execute_model(b, kv))
    if torch.cuda.is_available():
        torch.cuda._sleep(100_000_000)  # ~50 ms of GPU time
    launched_a = runner.execute_model(a, kv)
    launched_b = runner.execute_model(b, kv)
    assert tokens(launched_a) == expected_a
    assert tokens(launched_b) == expected_b


class EagerReplayGraphs(CUDAGraphRunner):
    """The CUDA-graph path on a CPU: its inputs are staged like the real graphs', and a
    "replay" runs the model eagerly on them."""

    def capture(self) -> None:
        for bs in self.sizes:
            self.stage_padding(bs)
            self.graphs[bs] = EagerReplay(self, bs)


class EagerReplay:
    def __init__(self, graphs: EagerReplayGraphs, batch_size: int) -> None:
        self.graphs, self.batch_size = graphs, batch_size

    def replay(self) -> None:
        graphs, inputs = self.graphs, self.graphs.inputs[self.batch_size]
        graphs.outputs[self.batch_size] = graphs.model(
            inputs.input_ids.device, inputs.positions.device, graphs.kv_caches,
            graphs._metadata(self.batch_size))


@pytest.mark.slow
def test_graph_layout_matches_eager_and_a_worker_copy():
    """Decode batches staged in the graphs' inputs (padded to 1, 2, 4 or 8 rows, block tables
    max_model_len wide) give the eager engine's tokens; the copy a tensor-parallel worker makes
    of broadcast inputs gives the same hidden states."""
    kwargs = dict(**FP32, max_model_len=96, max_num_seqs=8, attention="triton",
                  async_scheduling=True)
    prompts = [{"prompt_token_ids": p} for p in random_prompts(6, seed=3)]
    # Sequences finish one by one: decode batches of 6 down to 1 rows.
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)
              for n in (3, 5, 7, 9, 11, 13)]
    expected = [o.outputs[0].token_ids for o in LLM(MODEL, **kwargs).generate(
        prompts, params, use_tqdm=False)]

    llm = LLM(MODEL, **kwargs)
    runner = llm.llm_engine.model_runner
    graphs = EagerReplayGraphs(runner.model, runner.kv_caches, runner.input_buffers,
                               runner.config.max_num_seqs, runner.max_blocks_per_seq,
                               runner.config.max_model_len)
    graphs.capture()
    runner.cuda_graphs = graphs
    run = graphs.run
    batch_sizes = set()

    def checked_run(input_ids, positions, slot_mapping, block_tables, context_lens):
        b = input_ids.shape[0]
        static = graphs.inputs[graphs.padded_batch_size(0, b)]
        assert input_ids.data_ptr() == static.input_ids.device.data_ptr()  # staged in place
        assert block_tables.data_ptr() == static.block_tables.device.data_ptr()
        given = [t.clone() for t in (input_ids, positions, slot_mapping, block_tables,
                                     context_lens)]
        hidden = run(input_ids, positions, slot_mapping, block_tables, context_lens).clone()
        assert torch.equal(run(*given), hidden)  # copied in, as a worker does
        batch_sizes.add(b)
        return hidden

    graphs.run = checked_run
    got = [o.outputs[0].token_ids for o in llm.generate(prompts, params, use_tqdm=False)]
    assert got == expected
    assert batch_sizes == {1, 2, 3, 4, 5, 6}  # padded to 8 and 4; 1, 2 and 4 replayed as is


def test_reservations_are_aligned_and_bounded():
    buffers = InputBuffers(64, torch.device("cpu"))
    buffers.begin_step()
    small = buffers.reserve((3,), torch.int32)
    wide = buffers.reserve((2, 2), torch.int64)
    assert wide.device.data_ptr() - small.device.data_ptr() == 16  # 12 bytes, aligned to 16
    small.np[:] = [1, 2, 3]
    wide.np[:] = [[4, 5], [6, 7]]
    buffers.copy_to_device()
    assert small.device.tolist() == [1, 2, 3] and wide.device.tolist() == [[4, 5], [6, 7]]
    assert buffers.num_bytes_used == 48
    with pytest.raises(RuntimeError, match="more than the 64 bytes"):
        buffers.reserve((3,), torch.int64)
    buffers.begin_step()  # the next step packs from the start again
    assert buffers.reserve((1,), torch.int64).device.data_ptr() == small.device.data_ptr()
    # Every array starts 16-byte aligned, as a tensor of its own would: Triton compiles a kernel
    # variant per pointer alignment, so 8-byte offsets would make new variants mid-run.
    second = buffers.reserve((1,), torch.int64)
    assert second.device.data_ptr() - small.device.data_ptr() == 16
