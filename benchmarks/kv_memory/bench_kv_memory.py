"""KV cache waste: `reserved` vs `paged` on the offline workload, in a fixed KV budget.

The allocators are simulated with the real scheduler and KV cache managers (no model is
needed: how many slots a policy hands out does not depend on the tokens). Every sequence grows
by one token per step it runs. Each step we record the slots allocated and the slots actually
holding a token; waste = 1 - used / allocated, averaged over steps, and the number of sequences
running at once.

    python -m benchmarks.kv_memory.bench_kv_memory
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.common import print_table, write_result
from benchmarks.workload import random_workload
from minivllm.config import EngineConfig
from minivllm.core.kv_cache_manager import make_kv_cache_manager
from minivllm.core.scheduler import make_scheduler
from minivllm.sampling_params import SamplingParams
from minivllm.sequence import Sequence, SequenceStatus


def simulate(policy: str, args: argparse.Namespace) -> dict:
    cfg = EngineConfig(device="cpu", max_model_len=args.max_model_len, block_size=args.block_size,
                       kv_allocator=policy, max_num_seqs=args.num_prompts)
    cfg.resolve(args.max_model_len)
    num_blocks = args.kv_budget_tokens // args.block_size
    kv = make_kv_cache_manager(policy, num_blocks, args.block_size, args.max_model_len)
    sched = make_scheduler(cfg, kv)
    requests = random_workload(args.num_prompts, 32000, seed=0)
    seqs = []
    for i, r in enumerate(requests):
        seq = Sequence(str(i), r.prompt_token_ids, SamplingParams(max_tokens=r.output_len))
        sched.add_seq(seq)
        seqs.append(seq)
    waste, running = [], []
    while sched.has_unfinished_seqs():
        out = sched.schedule()
        sched.update_from_output(out)
        allocated = (num_blocks - kv.num_free_blocks) * args.block_size
        used = sum(s.num_computed_tokens for s in sched.running)
        if allocated:
            waste.append(1 - used / allocated)
            running.append(len(sched.running))
        for s in out.scheduled:
            if s.samples:
                s.seq.append_token(0)
                if len(s.seq.output_token_ids) >= s.seq.sampling_params.max_tokens:
                    sched.finish_seq(s.seq, SequenceStatus.FINISHED_LENGTH_CAPPED)
    return {"kv_allocator": policy, "mean_waste": statistics.mean(waste),
            "mean_running_seqs": statistics.mean(running), "max_running_seqs": max(running),
            "steps": len(waste), "preemptions": sched.num_preemptions}


def main() -> None:
    parser = argparse.ArgumentParser(description="KV cache waste, reserved vs paged")
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--kv-budget-tokens", type=int, default=131072)
    args = parser.parse_args()
    rows = [simulate(policy, args) for policy in ("reserved", "paged")]
    path = write_result("kv_memory", {"benchmark": "kv_memory", "config": vars(args),
                                      "figures": {"rows": rows}})
    print_table(rows, list(rows[0]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
