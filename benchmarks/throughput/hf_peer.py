"""The Hugging Face peer of the throughput benchmark, run in its own process.

transformers' continuous batching keeps a background generation thread (and CUDA graphs) alive
after it returns results; in a separate process it cannot disturb minivllm's own CUDA graph
capture, and its memory is given back when the process exits.

    python -m benchmarks.throughput.hf_peer FOLDER REQUESTS.json   # prints one JSON line
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, ContinuousBatchingConfig, GenerationConfig


def main() -> None:
    folder, requests_path = sys.argv[1], sys.argv[2]
    requests = json.loads(Path(requests_path).read_text())  # [[prompt_ids, output_len], ...]
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.bfloat16, attn_implementation="paged|sdpa").cuda().eval()
    gen = GenerationConfig(do_sample=False, max_new_tokens=max(o for _, o in requests),
                           eos_token_id=None, pad_token_id=0)
    manager = model.init_continuous_batching(
        generation_config=gen, continuous_batching_config=ContinuousBatchingConfig(
            use_cuda_graph=True))
    manager.start()
    warm = [manager.add_request(p[:32], max_new_tokens=8) for p, _ in requests[:2]]
    for rid in warm:
        manager.get_result(request_id=rid, timeout=600)
    start = time.perf_counter()
    ids = [manager.add_request(p, max_new_tokens=o) for p, o in requests]
    tokens = sum(len(manager.get_result(request_id=rid, timeout=600).generated_tokens)
                 for rid in ids)
    elapsed = time.perf_counter() - start
    manager.stop(block=True)
    print(json.dumps({"num_prompts": len(requests), "output_tokens": tokens,
                      "elapsed_s": elapsed, "output_tok_s": tokens / elapsed}))


if __name__ == "__main__":
    main()
