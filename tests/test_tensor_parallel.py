"""Tensor parallelism (lab 5): sharded layers, and tensor_parallel_size=2 against 1 end to end.

The layer tests need no processes: `as_tensor_parallel_rank` builds a layer as rank r of N
would, and the test does the all-reduce (a sum) or the gather (a concatenation) itself. The
engine tests run real tensor parallelism on the CPU: the test process is rank 0 (the driver) and
one spawned worker is rank 1, joined by gloo.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from minivllm import LLM, SamplingParams
from minivllm.distributed import (
    as_tensor_parallel_rank,
    model_parallel_is_initialized,
    record_all_reduce_time,
    verify_tensor_parallel_size,
)
from minivllm.model_executor.layers.activation import SiluAndMul
from minivllm.model_executor.layers.linear import (
    MergedColumnParallelLinear,
    QKVParallelLinear,
    RowParallelLinear,
)
from minivllm.model_executor.layers.vocab_parallel_embedding import (
    ParallelLMHead,
    VocabParallelEmbedding,
)
from minivllm.model_executor.model_loader import save_random_model
from minivllm.transformers_utils.presets import TINY_PRESETS, get_preset_config

TP = 2
CPU_FP32 = {"device": "cpu", "attention": "torch", "dtype": "float32", "max_model_len": 128,
            "block_size": 8, "num_gpu_blocks_override": 64, "max_num_seqs": 2}


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- layers, one rank at a time ----------------------------------------------------------------
def test_mlp_shards_sum_to_the_unsharded_mlp() -> None:
    """Column-parallel gate_up, then row-parallel down: the ranks' partial outputs add up to
    the whole MLP's output (the all-reduce), and each rank holds 1/N of each weight."""
    hidden, inter = 8, 12
    gate, up, down = randn(inter, hidden, seed=1), randn(inter, hidden, seed=2), randn(
        hidden, inter, seed=3)
    down_bias = randn(hidden, seed=4)
    x = randn(5, hidden, seed=5)
    act = SiluAndMul()
    expected = F.linear(act(torch.cat([F.linear(x, gate), F.linear(x, up)], -1)), down,
                        down_bias)

    partial_sums = []
    for rank in range(TP):
        with as_tensor_parallel_rank(rank, TP):
            gate_up = MergedColumnParallelLinear(hidden, [inter, inter])
            down_proj = RowParallelLinear(inter, hidden, bias=True)
        gate_up.weight.weight_loader(gate_up.weight, gate, 0)
        gate_up.weight.weight_loader(gate_up.weight, up, 1)
        down_proj.weight.weight_loader(down_proj.weight, down)
        down_proj.bias.weight_loader(down_proj.bias, down_bias)
        rows = slice(rank * inter // TP, (rank + 1) * inter // TP)
        assert torch.equal(gate_up.weight, torch.cat([gate[rows], up[rows]]))
        assert torch.equal(down_proj.weight, down[:, rows])
        # RowParallelLinear.forward without its all-reduce: rank 0 alone adds the bias.
        bias = down_proj.bias if rank == 0 else None
        partial_sums.append(F.linear(act(gate_up(x)), down_proj.weight, bias))
    torch.testing.assert_close(sum(partial_sums), expected)


@pytest.mark.parametrize(("num_heads", "num_kv_heads", "tp_size"),
                         [(4, 2, 2), (4, 1, 2), (8, 2, 4)])
def test_qkv_split_by_heads(num_heads: int, num_kv_heads: int, tp_size: int) -> None:
    """Each rank keeps its query heads and the KV heads they attend with; with fewer KV heads
    than ranks, a KV head is replicated on consecutive ranks."""
    head, hidden = 4, 16
    q, k, v = (randn(n * head, hidden, seed=i) for i, n in
               enumerate([num_heads, num_kv_heads, num_kv_heads]))
    q_heads, kv_heads = num_heads // tp_size, max(1, num_kv_heads // tp_size)
    for rank in range(tp_size):
        with as_tensor_parallel_rank(rank, tp_size):
            layer = QKVParallelLinear(hidden, head, num_heads, num_kv_heads)
        for shard_id, w in zip("qkv", (q, k, v), strict=True):
            layer.weight.weight_loader(layer.weight, w, shard_id)
        assert (layer.num_heads, layer.num_kv_heads) == (q_heads, kv_heads)
        kv_head = rank * num_kv_heads // tp_size  # the first KV head this rank keeps
        kv_rows = slice(kv_head * head, (kv_head + kv_heads) * head)
        expected = torch.cat([q[rank * q_heads * head:(rank + 1) * q_heads * head],
                              k[kv_rows], v[kv_rows]])
        assert torch.equal(layer.weight, expected)


def test_vocab_parallel_embedding_and_lm_head() -> None:
    """A vocabulary that does not divide by N is padded; the ranks' masked lookups add up to
    the embedding, their logits concatenate (padding dropped) to the whole logits."""
    vocab, hidden = 11, 6
    weight = randn(vocab, hidden)
    ids = torch.tensor([0, 5, 6, 10, 3])
    hidden_states = randn(3, hidden, seed=1)
    lookups, logit_slices = [], []
    for rank in range(TP):
        with as_tensor_parallel_rank(rank, TP):
            embed = VocabParallelEmbedding(vocab, hidden)
            head = ParallelLMHead(vocab, hidden)
        embed.weight.weight_loader(embed.weight, weight)
        head.weight.weight_loader(head.weight, weight)
        assert embed.weight.shape == (6, hidden)  # ceil(11 / 2) rows, the last one padding
        outside = (ids < embed.vocab_start_index) | (ids >= embed.vocab_end_index)
        local_ids = (ids - embed.vocab_start_index).masked_fill(outside, 0)
        lookups.append(F.embedding(local_ids, embed.weight).masked_fill(outside[:, None], 0))
        logit_slices.append(F.linear(hidden_states, head.weight))
    assert torch.equal(sum(lookups), F.embedding(ids, weight))
    torch.testing.assert_close(torch.cat(logit_slices, -1)[:, :vocab],
                               F.linear(hidden_states, weight))


# -- configurations that cannot be split ---------------------------------------------------------
def test_tensor_parallel_size_must_divide_the_heads() -> None:
    config = get_preset_config("tiny-llama")  # 4 query heads, 2 KV heads
    with pytest.raises(ValueError, match="attention heads"):
        verify_tensor_parallel_size(config, 3, "cpu")
    config.num_attention_heads, config.num_key_value_heads = 12, 6
    with pytest.raises(ValueError, match="KV heads"):
        verify_tensor_parallel_size(config, 4, "cpu")
    with pytest.raises(ValueError, match="attention heads"):  # before any process starts
        LLM("random:tiny-llama", tensor_parallel_size=3, **CPU_FP32)
    assert not model_parallel_is_initialized()


def test_tensor_parallel_size_must_not_exceed_the_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="number of GPUs"):
        verify_tensor_parallel_size(get_preset_config("tiny-llama"), 2, "cuda")


# -- end to end: tp=2 against tp=1 -----------------------------------------------------------
def record_logits(llm: LLM) -> list[torch.Tensor]:
    """Every step's logits, as the driver's sampler receives them (gathered over the ranks)."""
    model = llm.llm_engine.model_runner.model
    compute_logits, recorded = model.compute_logits, []

    def recording(hidden_states: torch.Tensor) -> torch.Tensor:
        logits = compute_logits(hidden_states)
        recorded.append(logits.clone())
        return logits

    model.compute_logits = recording
    return recorded


def generate(llm: LLM) -> list[list[int]]:
    """Three prompts of different lengths and output lengths, at most two sequences at a time:
    steps mix a prefill with decodes."""
    g = torch.Generator().manual_seed(0)
    prompts = [{"prompt_token_ids": torch.randint(0, 512, (n,), generator=g).tolist()}
               for n in (5, 19, 11)]
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in (6, 12, 9)]
    return [o.outputs[0].token_ids for o in llm.generate(prompts, params, use_tqdm=False)]


@pytest.fixture(params=TINY_PRESETS)
def model_name(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every tiny preset; tiny-qwen2 from a Hugging Face folder, so that one rank loads its
    shards from safetensors."""
    if request.param == "tiny-qwen2":
        return str(save_random_model(request.param, tmp_path_factory.mktemp(request.param)))
    return f"random:{request.param}"


def test_tp2_matches_tp1(model_name: str) -> None:
    single = LLM(model_name, **CPU_FP32)
    expected_logits = record_logits(single)
    expected_tokens = generate(single)

    llm = LLM(model_name, tensor_parallel_size=TP, **CPU_FP32)
    try:
        engine = llm.llm_engine
        hf_config = engine.model_config
        kv_heads = max(1, hf_config.num_key_value_heads // TP)
        assert engine.model_runner.kv_cache_spec.num_kv_heads == kv_heads
        logits = record_logits(llm)
        with record_all_reduce_time() as all_reduces:
            assert generate(llm) == expected_tokens
        assert len(logits) == len(expected_logits)
        for got, want in zip(logits, expected_logits, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        # One all-reduce after the embedding, then one per attention and one per MLP block.
        assert all_reduces.num_calls == len(logits) * (1 + 2 * hf_config.num_hidden_layers)
        workers = engine.model_executor.workers
    finally:
        llm.llm_engine.shutdown()
    assert [w.process.exitcode for w in workers] == [0] * (TP - 1)
    assert not model_parallel_is_initialized()


def call_with_deadline(fn: Callable[[], object], seconds: float) -> object:
    """fn(), failing the test if it has not returned or raised within `seconds` (a hang)."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: the engine hangs"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_dead_worker_fails_the_engine() -> None:
    """A worker killed in the middle of a step fails that step, and every later one, with an
    error naming its rank, within seconds."""
    llm = LLM("random:tiny-mistral", tensor_parallel_size=TP, **CPU_FP32)
    executor = llm.llm_engine.model_executor
    (worker,) = executor.workers
    try:
        generate(llm)  # healthy
        execute_model_input = executor.driver_runner.execute_model_input

        def kill_worker_then_execute(inputs):  # the worker has the step's inputs by now
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join()
            return execute_model_input(inputs)

        executor.driver_runner.execute_model_input = kill_worker_then_execute
        for _ in range(2):  # in a collective, then at the next step's liveness check
            with pytest.raises(RuntimeError, match=r"worker rank 1 .* died"):
                call_with_deadline(lambda: generate(llm), seconds=30)
    finally:
        llm.llm_engine.shutdown()
    assert not model_parallel_is_initialized()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < TP, reason=f"needs {TP} CUDA devices")
@pytest.mark.parametrize("enforce_eager", [True, False])
def test_tp2_matches_tp1_on_gpus(enforce_eager: bool) -> None:
    """NCCL between two GPUs, Triton attention, and (enforce_eager=False) all-reduces captured
    in CUDA graphs: float32 so that the tokens must agree exactly."""
    gpu = {"dtype": "float32", "max_model_len": 128, "block_size": 16,
           "num_gpu_blocks_override": 64, "max_num_seqs": 2, "enforce_eager": enforce_eager}
    single = LLM("random:tiny-llama", **gpu)
    expected_logits, expected_tokens = record_logits(single), generate(single)
    del single
    llm = LLM("random:tiny-llama", tensor_parallel_size=TP, **gpu)
    try:
        logits = record_logits(llm)
        assert generate(llm) == expected_tokens
        for got, want in zip(logits, expected_logits, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    finally:
        llm.llm_engine.shutdown()
