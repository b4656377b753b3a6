"""End to end through LLM / LLMEngine on tiny random models of each architecture, compared with
Hugging Face transformers, and across the three lab switches."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from minivllm import LLM, SamplingParams
from minivllm.model_executor.model_loader import save_random_model
from minivllm.sampling_params import RequestOutputKind

ARCHS = ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"]
NUM_STEPS = 32
# Exact comparisons need float32 on every device (on CUDA, bf16 rounding depends on the batch
# shape, so greedy ties could break differently; tests/test_gpu.py covers bf16). A fixed, small
# KV pool keeps each engine light (several live in one test process).
FP32 = {"dtype": "float32", "num_gpu_blocks_override": 256}


def prompts_of_different_lengths(vocab_size: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (n,), generator=g).tolist() for n in (3, 17, 40, 9)]


@pytest.fixture(scope="module", params=ARCHS)
def arch_and_folder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    save_random_model(request.param, folder)
    return request.param, folder


def hf_greedy(folder, prompts: list[list[int]], steps: int) -> list[list[int]]:
    """Greedy argmax decoding with the HF model's forward, EOS not special (like ignore_eos;
    `generate` with min_new_tokens would instead forbid EOS)."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for p in prompts:
            ids = list(p)
            for _ in range(steps):
                logits = model(torch.tensor([ids])).logits[0, -1]
                ids.append(int(logits.argmax()))
            out.append(ids[len(p):])
    return out


GREEDY = SamplingParams(temperature=0.0, max_tokens=NUM_STEPS, ignore_eos=True)


def test_greedy_matches_transformers(arch_and_folder):
    _, folder = arch_and_folder
    llm = LLM(str(folder), **FP32, max_model_len=128, block_size=8)
    prompts = prompts_of_different_lengths(llm.llm_engine.model_config.vocab_size)
    ours = [o.outputs[0].token_ids for o in llm.generate(
        [{"prompt_token_ids": p} for p in prompts], GREEDY, use_tqdm=False)]
    assert ours == hf_greedy(folder, prompts, NUM_STEPS)
    kv = llm.llm_engine.kv_cache_manager
    assert kv.num_free_blocks == kv.num_blocks


@pytest.mark.parametrize("switches", [
    {"kv_allocator": "reserved", "scheduler": "static"},
    {"kv_allocator": "reserved", "scheduler": "continuous"},
    {"kv_allocator": "paged", "scheduler": "static"},
    {"kv_allocator": "paged", "scheduler": "continuous", "max_num_seqs": 2},
])
def test_lab_switches_give_identical_greedy_outputs(switches):
    base = LLM("random:tiny-llama", **FP32, max_model_len=96, block_size=8)
    prompts = [{"prompt_token_ids": p} for p in prompts_of_different_lengths(512, seed=1)]
    expected = [o.outputs[0].token_ids for o in base.generate(prompts, GREEDY, use_tqdm=False)]
    llm = LLM("random:tiny-llama", **FP32, max_model_len=96, block_size=8, **switches)
    got = [o.outputs[0].token_ids for o in llm.generate(prompts, GREEDY, use_tqdm=False)]
    assert got == expected
    kv = llm.llm_engine.kv_cache_manager
    assert kv.num_free_blocks == kv.num_blocks


def test_preemption_keeps_greedy_outputs():
    prompts = [{"prompt_token_ids": p} for p in prompts_of_different_lengths(512, seed=2)]
    roomy = LLM("random:tiny-llama", **FP32, max_model_len=96, block_size=8)
    expected = [o.outputs[0].token_ids for o in roomy.generate(prompts, GREEDY, use_tqdm=False)]
    # 16 blocks of 8 tokens: the four sequences (up to 72 tokens each) cannot all grow at once.
    tight = LLM("random:tiny-llama", **{**FP32, "num_gpu_blocks_override": 16},
                max_model_len=96, block_size=8)
    got = [o.outputs[0].token_ids for o in tight.generate(prompts, GREEDY, use_tqdm=False)]
    assert tight.llm_engine.scheduler.num_preemptions > 0
    assert got == expected
    kv = tight.llm_engine.kv_cache_manager
    assert kv.num_free_blocks == kv.num_blocks
    assert all(c == 0 for c in kv.allocator.ref_counts)


@pytest.mark.parametrize("attention", ["torch", "triton"])
def test_padding_steps_with_prefills_changes_no_token(attention):
    """On CUDA, steps with prefills are padded to a multiple of 128 tokens (for cuBLAS's sake,
    model_runner.py); forced here with a multiple of 24, the greedy tokens stay the same."""
    prompts = [{"prompt_token_ids": p} for p in prompts_of_different_lengths(512, seed=4)]
    kwargs = dict(max_model_len=96, block_size=8, attention=attention, **FP32)
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    expected = [o.outputs[0].token_ids
                for o in LLM("random:tiny-qwen3", **kwargs).generate(prompts, params,
                                                                      use_tqdm=False)]
    llm = LLM("random:tiny-qwen3", **kwargs)
    runner = llm.llm_engine.model_runner
    runner.token_multiple = 24
    step_sizes = []
    runner.model.register_forward_pre_hook(
        lambda module, args: step_sizes.append((args[0].shape[0], args[3].num_prefills)))
    got = [o.outputs[0].token_ids for o in llm.generate(prompts, params, use_tqdm=False)]
    assert got == expected
    prefill_sizes = [n for n, num_prefills in step_sizes if num_prefills]
    assert prefill_sizes and all(n % 24 == 0 for n in prefill_sizes)
    kv = llm.llm_engine.kv_cache_manager
    assert kv.num_free_blocks == kv.num_blocks


def test_too_long_prompt_is_a_value_error_and_nothing_else_changes():
    llm = LLM("random:tiny-llama", **FP32, max_model_len=32, block_size=8)
    with pytest.raises(ValueError, match="maximum model length of 32"):
        llm.generate([{"prompt_token_ids": [1] * 10}, {"prompt_token_ids": [1] * 40}], GREEDY,
                     use_tqdm=False)
    engine = llm.llm_engine
    assert not engine.has_unfinished_requests()
    out = llm.generate({"prompt_token_ids": [1, 2, 3]},
                       SamplingParams(temperature=0, max_tokens=4, ignore_eos=True),
                       use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 4


def test_abort_frees_blocks_and_other_requests_continue():
    llm = LLM("random:tiny-llama", **FP32, max_model_len=96, block_size=8)
    engine = llm.llm_engine
    params = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)
    engine.add_request("a", [1, 2, 3, 4], params)
    engine.add_request("b", [5, 6, 7], params)
    engine.step()
    engine.step()
    engine.abort_request("a")
    finished = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            assert out.request_id == "b"
            if out.finished:
                finished[out.request_id] = out
    assert len(finished["b"].outputs[0].token_ids) == 20
    kv = engine.kv_cache_manager
    assert kv.num_free_blocks == kv.num_blocks


def test_final_only_requests_return_one_output_with_the_cumulative_result():
    llm = LLM("random:tiny-llama", **FP32, max_model_len=96)
    engine = llm.llm_engine
    prompt = [3, 1, 4, 1, 5]
    cumulative = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    final_only = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True,
                                output_kind=RequestOutputKind.FINAL_ONLY)
    engine.add_request("every-step", prompt, cumulative)
    engine.add_request("final", prompt, final_only)
    seen: dict[str, list] = {"every-step": [], "final": []}
    while engine.has_unfinished_requests():
        for out in engine.step():
            seen[out.request_id].append(out)
    assert len(seen["every-step"]) == 6 and len(seen["final"]) == 1
    last, only = seen["every-step"][-1], seen["final"][0]
    assert only.finished and only.outputs[0].token_ids == last.outputs[0].token_ids
    assert only.outputs[0].text == last.outputs[0].text
    # LLM.generate asks for final outputs on a copy: the caller's params are unchanged.
    llm.generate({"prompt_token_ids": prompt}, cumulative, use_tqdm=False)
    assert cumulative.output_kind == RequestOutputKind.CUMULATIVE


def test_n_and_seed_reproduce():
    llm = LLM("random:tiny-qwen3", **FP32, max_model_len=64)
    params = SamplingParams(n=3, temperature=1.0, seed=7, max_tokens=8, ignore_eos=True)
    a = llm.generate({"prompt_token_ids": [1, 2, 3]}, params, use_tqdm=False)[0]
    b = llm.generate({"prompt_token_ids": [1, 2, 3]}, params, use_tqdm=False)[0]
    assert [o.token_ids for o in a.outputs] == [o.token_ids for o in b.outputs]
    assert [o.index for o in a.outputs] == [0, 1, 2]
    assert len({tuple(o.token_ids) for o in a.outputs}) > 1  # the n samples differ


def test_logprobs_are_returned_per_token():
    llm = LLM("random:tiny-llama", **FP32, max_model_len=64)
    out = llm.generate({"prompt_token_ids": [1, 2, 3]},
                       SamplingParams(temperature=0, max_tokens=5, logprobs=3, ignore_eos=True),
                       use_tqdm=False)[0].outputs[0]
    assert len(out.logprobs) == 5
    for token, entry in zip(out.token_ids, out.logprobs, strict=True):
        assert token in entry and entry[token].rank == 1  # greedy picks the top token
        assert len(entry) == 3
        assert all(lp.logprob <= 0 for lp in entry.values())
    assert out.cumulative_logprob == pytest.approx(
        sum(e[t].logprob for t, e in zip(out.token_ids, out.logprobs, strict=True)), abs=1e-4)


def test_triton_attention_matches_torch_end_to_end():
    """Lab 2's switch: the same greedy tokens through the Triton kernels (compiled on CUDA,
    interpreted on a CPU) as through the PyTorch reference."""
    prompts = [{"prompt_token_ids": p} for p in prompts_of_different_lengths(512, seed=3)]
    params = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    kwargs = dict(max_model_len=96, block_size=16, **FP32)
    expected = [o.outputs[0].token_ids for o in LLM("random:tiny-qwen3", attention="torch",
                                                    **kwargs).generate(prompts, params,
                                                                       use_tqdm=False)]
    got = [o.outputs[0].token_ids for o in LLM("random:tiny-qwen3", attention="triton",
                                               **kwargs).generate(prompts, params,
                                                                  use_tqdm=False)]
    assert got == expected
