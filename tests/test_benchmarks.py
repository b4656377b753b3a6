"""Benchmarks end to end, at smoke size on the CPU.

The offline throughput benchmark: both engines (ours and the Hugging Face transformers
continuous-batching peer, in its subprocess) generate every requested token, and the record
says so. Catches a peer broken by a transformers release before a GPU run finds out (once, a
peer asking for its results one id at a time never finished on the H100).

The decode-step A/B: both trees timed in every round, the base from the folder named.

The skinny-matmul benchmark: a row for every shape, each with the kernel's result checked
against float64. The argmax benchmark: a row for every case, the kernel picking the tokens
`torch.argmax` picks."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.workload import random_workload
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


def test_throughput_smoke_runs_both_engines_to_the_last_token():
    record = run_smoke("benchmarks.throughput.bench_throughput", "throughput_smoke")
    config, figures = record["config"], record["figures"]
    vocab = get_model_config(config["model"]).vocab_size
    requests = random_workload(config["num_prompts"], vocab, tuple(config["input_range"]),
                               tuple(config["output_range"]), seed=0)
    expected = sum(r.output_len for r in requests)
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
