"""CPU decode speed of the embedded default model: minivllm vs Hugging Face `generate`.

Single-stream and 8-stream generation of a fixed number of tokens (greedy, ignore_eos) from
short chat prompts, in the same run:
  - minivllm `LLM.generate` (one prompt; then the 8 prompts together, continuous batching);
  - transformers `generate` (one prompt; then the 8 prompts as one left-padded batch).
Reports output tokens per second (prefill included: the prompts are short), the median of
`--repeats` rounds, and writes benchmarks/results/cpu_decode.json.

    python benchmarks/cpu_decode/bench_cpu_decode.py [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from benchmarks.common import write_result
from minivllm import LLM, SamplingParams
from minivllm.config import DEFAULT_MODEL
from minivllm.transformers_utils.config import resolve_model_path

QUESTIONS = ["What is the capital of France?", "Name three primary colors.",
             "Why is the sky blue?", "Write a haiku about autumn.",
             "What is 12 times 12?", "Give me a synonym for happy.",
             "Who wrote Hamlet?", "What does a CPU do?"]


def hf_tok_per_s(model, tokenizer, prompts: list[list[int]], max_tokens: int) -> float:
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(ids, attention_mask=mask, max_new_tokens=max_tokens,
                       min_new_tokens=max_tokens, do_sample=False, pad_token_id=pad)
    return len(prompts) * max_tokens / (time.perf_counter() - start)


def ours_tok_per_s(llm: LLM, prompts: list[list[int]], max_tokens: int) -> float:
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    start = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    return sum(len(o.outputs[0].token_ids) for o in outs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="rounds; figures are medians")
    args = parser.parse_args()
    torch.manual_seed(0)

    llm = LLM(DEFAULT_MODEL, max_model_len=1024, device="cpu")
    tokenizer = llm.get_tokenizer()
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                             add_generation_prompt=True, tokenize=True,
                                             return_dict=False) for q in QUESTIONS]
    hf = AutoModelForCausalLM.from_pretrained(resolve_model_path(DEFAULT_MODEL),
                                              torch_dtype=torch.float32).eval()
    # Warm up both (first calls allocate and pick kernels).
    ours_tok_per_s(llm, prompts[:1], 4)
    hf_tok_per_s(hf, tokenizer, prompts[:1], 4)

    # This machine's 2 cores are noisy: run the four measurements in turn, report medians.
    measure = {
        "minivllm_1_stream_tok_s": lambda: ours_tok_per_s(llm, prompts[:1], args.max_tokens),
        "hf_1_stream_tok_s": lambda: hf_tok_per_s(hf, tokenizer, prompts[:1], args.max_tokens),
        "minivllm_8_streams_tok_s": lambda: ours_tok_per_s(llm, prompts, args.max_tokens),
        "hf_8_padded_batch_tok_s": lambda: hf_tok_per_s(hf, tokenizer, prompts, args.max_tokens),
    }
    runs: dict[str, list[float]] = {name: [] for name in measure}
    for _ in range(args.repeats):
        for name, run in measure.items():
            runs[name].append(run())
    figures = {name: statistics.median(values) for name, values in runs.items()}
    figures["ratio_1_stream"] = figures["minivllm_1_stream_tok_s"] / figures["hf_1_stream_tok_s"]
    figures["ratio_8_streams"] = (figures["minivllm_8_streams_tok_s"]
                                  / figures["hf_8_padded_batch_tok_s"])
    config = {"model": DEFAULT_MODEL, "dtype": "float32", "max_tokens": args.max_tokens,
              "num_streams": [1, len(prompts)], "repeats": args.repeats,
              "torch_threads": torch.get_num_threads()}
    record = {"benchmark": "cpu_decode", "config": config, "figures": figures, "runs": runs}
    path = write_result("cpu_decode", record)
    for key, value in figures.items():
        print(f"{key:>28}: {value:8.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
