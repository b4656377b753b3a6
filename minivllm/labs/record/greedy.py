"""Record end-to-end greedy runs (`minivllm.labs.e2e`) for one lab, on this device class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minivllm.labs.e2e import device_class, greedy_run, seeded_prompts
from minivllm.labs.record import Recorded, write_json


def record_greedy(out_dir: Path, lab: str, runs: list[dict[str, Any]],
                  device: str | None = None) -> Recorded:
    """Each run: name, model, vocab_size, prompt_lengths, seed, max_tokens, engine (LLM
    keywords, without `device`), and optionally shared_prefix_length (every prompt then starts
    with the same seeded tokens). Runs on `device` (default: this machine's device class) and
    writes `<lab>_greedy_<device>.json`."""
    device = device or device_class()
    recorded = []
    for run in runs:
        prompts = seeded_prompts(run["prompt_lengths"], run["vocab_size"], run["seed"])
        if run.get("shared_prefix_length"):
            prefix = seeded_prompts([run["shared_prefix_length"]], run["vocab_size"],
                                    run["seed"] + 1)[0]
            prompts = [prefix + p for p in prompts]
        result = greedy_run(run["model"], prompts, run["max_tokens"],
                            {**run["engine"], "device": device})
        assert result.num_free_blocks_after == result.num_blocks, "the reference leaks blocks"
        outcome = {"token_ids": result.token_ids, "num_preemptions": result.num_preemptions}
        if run["engine"].get("enable_prefix_caching"):
            assert any(result.num_cached_tokens), f"{run['name']}: no prefix-cache hit"
            outcome["num_cached_tokens"] = result.num_cached_tokens
        recorded.append({**run, "prompts": prompts, **outcome})
    name = f"{lab}_greedy_{device}.json"
    write_json(out_dir / name, {"device": device, "runs": recorded})
    auto = "float32" if device == "cpu" else "bfloat16"  # the engine's dtype="auto"
    dtypes = sorted({run["engine"].get("dtype", auto) for run in runs})
    return Recorded(name, device=device, dtypes=dtypes)
