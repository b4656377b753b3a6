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


def collect(manager, request_ids: list[str], timeout_s: float) -> int:
    """Wait until every request has finished; return their generated tokens. Results come in
    finishing order on one shared queue, so they are taken as they come (asking for one id at
    a time would put the others back and spin)."""
    pending, tokens = set(request_ids), 0
    while pending:
        result = manager.get_result(timeout=timeout_s)
        if result is None:
            raise RuntimeError(f"transformers' continuous batching returned nothing for "
                               f"{timeout_s:.0f} s with {len(pending)} requests pending")
        if result.request_id in pending and result.is_finished():
            pending.remove(result.request_id)
            tokens += len(result.generated_tokens)
    return tokens


def main() -> None:
    folder, requests_path = sys.argv[1], sys.argv[2]
    requests = json.loads(Path(requests_path).read_text())  # [[prompt_ids, output_len], ...]
    cuda = torch.cuda.is_available()  # the CPU runs only the benchmark's smoke test
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.bfloat16 if cuda else torch.float32,
        attn_implementation="paged|sdpa").to("cuda" if cuda else "cpu").eval()
    gen = GenerationConfig(do_sample=False, max_new_tokens=max(o for _, o in requests),
                           eos_token_id=None, pad_token_id=0)
    manager = model.init_continuous_batching(
        generation_config=gen, continuous_batching_config=ContinuousBatchingConfig(
            use_cuda_graph=cuda))
    manager.start()
    collect(manager, [manager.add_request(p[:32], max_new_tokens=8) for p, _ in requests[:2]],
            timeout_s=600)
    start = time.perf_counter()
    tokens = collect(manager, [manager.add_request(p, max_new_tokens=o) for p, o in requests],
                     timeout_s=600)
    elapsed = time.perf_counter() - start
    manager.stop(block=True)
    print(json.dumps({"num_prompts": len(requests), "output_tokens": tokens,
                      "elapsed_s": elapsed, "output_tok_s": tokens / elapsed}))


if __name__ == "__main__":
    main()
