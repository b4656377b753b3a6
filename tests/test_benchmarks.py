"""Benchmarks end to end, at smoke size on the CPU.

The offline throughput benchmark: both engines (ours and the Hugging Face transformers
continuous-batching peer, in its subprocess) generate every requested token, and the record
says so. Catches a peer broken by a transformers release before a GPU run finds out (once, a
peer asking for its results one id at a time never finished on the H100).

The decode-step A/B: both trees timed in every round, the base from the folder named.

The skinny-matmul benchmark: a row for every shape, each with the kernel's result checked
against float64. The argmax benchmark: a row for every case, the kernel picking the tokens
`torch.argmax` picks.

The other GPU benchmarks, so that their code cannot rot between GPU sessions: the decode-step
record has a row per (batch, context); the attention kernels match SDPA; chunked prefill splits
the long prompt to its budget while the streams keep a token per step; prefix caching computes
the shared prefix once; tensor parallelism at 2 generates every token that size 1 does; the
server answers every request of a small load. The KV-memory simulation is deterministic, so
its committed record must come out again from the code."""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.kernels.bench_decode import SMOKE as KERNEL_SMOKE
from benchmarks.kv_memory.bench_kv_memory import simulate
from benchmarks.workload import random_workload
from minivllm.config import EngineConfig
from minivllm.model_executor.model_loader import get_model_config

ROOT = Path(__file__).resolve().parents[1]


def run_smoke(module: str, record_name: str, *args: str) -> dict:
    """Run `python -m <module> --smoke *args` and return the record it wrote (made fresh)."""
    record_path = ROOT / "benchmarks" / "results" / f"{record_name}.json"
    record_path.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", module, "--smoke", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(record_path.read_text())


def workload_output_tokens(config: dict) -> int:
    """The output tokens of the random workload a throughput-style record was run on."""
    vocab = get_model_config(config["model"]).vocab_size
    requests = random_workload(config["num_prompts"], vocab, tuple(config["input_range"]),
                               tuple(config["output_range"]), seed=0)
    return sum(r.output_len for r in requests)


def test_throughput_smoke_runs_both_engines_to_the_last_token():
    record = run_smoke("benchmarks.throughput.bench_throughput", "throughput_smoke")
    config, figures = record["config"], record["figures"]
    expected = workload_output_tokens(config)
    assert figures["minivllm"]["output_tokens"] == expected
    assert figures["hf"]["output_tokens"] == expected
    assert figures["hf"]["num_prompts"] == config["num_prompts"]
    assert figures["ratio_to_hf"] > 0 and figures["ratio_to_roofline"] > 0


def test_skinny_gemm_smoke_records_every_shape():
    record = run_smoke("benchmarks.kernels.bench_skinny_gemm", "skinny_gemm_cpu_smoke")
    config = record["config"]
    assert [(r["proj"], r["rows"]) for r in record["rows"]] == [
        (name, rows) for name in config["shapes"] for rows in config["rows"]]
    for row in record["rows"]:
        assert row["max_abs_err"] < 1e-4  # fp32 on the CPU
        assert row["cublas_us"] > 0 and row["skinny_us"] > 0
        assert row["linear_runs"] == "cublas"  # the kernel is for CUDA graphs only


def test_argmax_smoke_records_every_case():
    record = run_smoke("benchmarks.kernels.bench_argmax", "argmax_cpu_smoke")
    assert [[r["rows"], r["dtype"]] for r in record["rows"]] == record["config"]["cases"]
    for row in record["rows"]:
        assert row["same_tokens"]
        assert row["torch_us"] > 0 and row["triton_us"] > 0


def test_decode_step_ab_times_both_trees_in_every_round(tmp_path: Path):
    shutil.copytree(ROOT / "minivllm", tmp_path / "minivllm",
                    ignore=shutil.ignore_patterns("__pycache__"))
    record = run_smoke("benchmarks.decode_step.ab_decode_step", "decode_step_ab_smoke",
                       "--base", str(tmp_path))
    config, rows = record["config"], record["figures"]["rows"]
    assert Path(config["packages"]["base"]).is_relative_to(tmp_path)
    assert Path(config["packages"]["change"]).is_relative_to(ROOT / "minivllm")
    assert [(r["batch"], r["context"]) for r in rows] == [
        (b, c) for c in config["contexts"] for b in config["batch_sizes"]]
    for row in rows:
        assert len(row["base_rounds_ms"]) == len(row["change_rounds_ms"]) == config["rounds"]
        assert row["change_over_base"] == pytest.approx(
            row["change_overlapped_ms"] / row["base_overlapped_ms"])
        assert row["roofline_ms"] > 0


def test_decode_step_ab_refuses_a_base_without_minivllm(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.decode_step.ab_decode_step",
                           "--smoke", "--base", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "holds no minivllm/ package" in proc.stderr


def test_decode_step_smoke_records_every_batch_and_context():
    record = run_smoke("benchmarks.decode_step.bench_decode_step", "decode_step_smoke")
    config, rows = record["config"], record["figures"]["rows"]
    assert [(r["batch"], r["context"]) for r in rows] == [
        (b, c) for c in config["contexts"] for b in config["batch_sizes"]]
    for row in rows:
        assert len(row["step_ms_runs"]) == len(row["overlapped_step_ms_runs"]) == config["repeats"]
        assert row["fraction_of_roofline"] == pytest.approx(row["roofline_ms"] / row["step_ms"])
        kv_bytes = row["batch"] * row["context"] * config["kv_bytes_per_token"]
        assert row["roofline_ms"] == pytest.approx(
            (config["weight_bytes"] + kv_bytes) / record["figures"]["bandwidth_gbs"] * 1e-6)


def test_attention_kernel_smoke_matches_sdpa_at_every_shape():
    record = run_smoke("benchmarks.kernels.bench_decode", "kernels_cpu_smoke")
    assert [(r["batch"], r["context"]) for r in record["decode"]] == KERNEL_SMOKE["decode"]
    for row in [*record["decode"], record["prefill"]]:
        assert row["max_abs_err"] < 1e-4  # fp32 on the CPU
        assert row["triton_ms"] > 0 and row["sdpa_ms"] > 0


def test_chunked_prefill_smoke_keeps_the_streams_going():
    record = run_smoke("benchmarks.chunked_prefill.bench_chunked_prefill", "chunked_prefill_smoke")
    config, runs = record["config"], record["figures"]["runs"]
    prompt_len, streams = config["long_prompt_len"], config["num_streams"]
    assert [r["max_num_batched_tokens"] for r in runs[1:]] == config["chunk_budgets"]
    for run in runs:
        after = [s for s in run["steps"] if s["t_s"] > 0]
        prefills = [s for s in after if s["prefill_tokens"]]
        assert sum(s["prefill_tokens"] for s in prefills) == prompt_len
        if not run["chunked_prefill"]:  # the whole prompt in one step
            assert run["prefill_steps"] == 1
            continue
        budget = run["max_num_batched_tokens"]
        assert run["prefill_steps"] == -(-prompt_len // (budget - streams))
        assert all(s["decode_tokens"] == streams for s in prefills)
        assert all(s["prefill_tokens"] + s["decode_tokens"] <= budget for s in run["steps"])


def test_prefix_caching_smoke_computes_the_shared_prefix_once():
    record = run_smoke("benchmarks.prefix_caching.bench_prefix_caching", "prefix_caching_smoke")
    config = record["config"]
    off, on = record["figures"]["runs"]
    n = config["num_requests"]
    assert off["prompt_tokens"] == on["prompt_tokens"] == n * (config["prefix_len"]
                                                               + config["suffix_len"])
    assert off["prompt_tokens_computed"] == off["prompt_tokens"]
    assert off["prefix_cache_hit_rate"] == 0 and off["num_cached_tokens"] == [0] * n
    block_size = EngineConfig().block_size
    shared = config["prefix_len"] // block_size * block_size  # whole blocks of the prefix
    assert sorted(on["num_cached_tokens"]) == [0] + [shared] * (n - 1)
    assert on["prompt_tokens_computed"] == on["prompt_tokens"] - sum(on["num_cached_tokens"])


def test_tensor_parallel_smoke_generates_every_token_at_both_sizes():
    record = run_smoke("benchmarks.tensor_parallel.bench_tp", "tensor_parallel_smoke")
    config, figures = record["config"], record["figures"]
    expected = workload_output_tokens(config)
    assert config["tp_sizes"] == [1, 2]
    assert figures["tp1"]["output_tokens"] == figures["tp2"]["output_tokens"] == expected
    # Each rank holds half of the KV heads, so the same KV memory holds twice the blocks.
    assert figures["tp2"]["num_kv_blocks"] == 2 * figures["tp1"]["num_kv_blocks"]
    profile = figures["tp2"]["profile"]
    assert profile["all_reduce_calls"] > 0 and 0 < profile["all_reduce_share"] < 1


def test_serving_benchmark_completes_every_request_on_the_cpu():
    record = run_smoke("benchmarks.serving.bench_serving", "serving_smoke")
    config, server, offline = record["config"], record["server"], record["offline"]
    num_prompts, output_len = config["num_prompts"], config["random_output_len"]
    assert server["completed"] == num_prompts and server["failed"] == 0, server["errors"]
    assert server["total_output_tokens"] == offline["total_output_tokens"] == (
        num_prompts * output_len)
    assert record["server_over_offline_output_throughput"] == pytest.approx(
        server["output_throughput"] / offline["output_throughput"])


def test_kv_memory_record_comes_out_of_the_simulation_again():
    record = json.loads((ROOT / "benchmarks" / "results" / "kv_memory.json").read_text())
    args = argparse.Namespace(**record["config"])
    rows = [simulate(row["kv_allocator"], args) for row in record["figures"]["rows"]]
    assert rows == [pytest.approx(row) for row in record["figures"]["rows"]]
