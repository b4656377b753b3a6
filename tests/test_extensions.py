"""Lab 5's extensions end to end: prefix caching and chunked prefill change which tokens are
computed and when, never the greedy tokens that come out (fp32, both attention backends, both
schedulers, with preemption)."""

import logging

import pytest
import torch

from minivllm import LLM, SamplingParams

FP32 = {"dtype": "float32", "num_gpu_blocks_override": 256}
GREEDY = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
MODEL = "random:tiny-llama"


def random_tokens(n: int, g: torch.Generator) -> list[int]:
    return torch.randint(0, 512, (n,), generator=g).tolist()


def shared_prefix_prompts(block_size: int = 8) -> list[list[int]]:
    """Prompts that share 0, 1 and many blocks with a 5-block prefix, part of a block more,
    all of it block-aligned with nothing after it, and a prompt twice."""
    g = torch.Generator().manual_seed(0)
    prefix = random_tokens(5 * block_size, g)
    tail = [random_tokens(n, g) for n in (5, 3, 6, 2, 7)]
    return [prefix[:block_size] + tail[0],   # computes block 0
            random_tokens(9, g),              # shares nothing
            prefix[:block_size] + tail[1],   # 1 block
            prefix + tail[2],                 # many blocks
            prefix,                           # fully cached and aligned: last block recomputed
            prefix[: 2 * block_size],          # aligned, 2 blocks
            prefix[: 3 * block_size + 3] + tail[3],  # blocks, then a partial one
            prefix + tail[2],                 # the same prompt again
            prefix[: 2 * block_size + 1]]      # all but its last token cached


def generate(llm: LLM, prompts: list[list[int]], params: SamplingParams = GREEDY):
    return llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)


def token_ids(outputs) -> list[list[int]]:
    return [o.outputs[0].token_ids for o in outputs]


def assert_all_blocks_free(llm: LLM) -> None:
    kv = llm.llm_engine.kv_cache_manager
    assert kv.num_free_blocks == kv.num_blocks
    assert all(c == 0 for c in kv.allocator.ref_counts)


def computed_tokens(llm: LLM) -> int:
    """Tokens the model ran, from the scheduler's trace (prompt chunks plus decodes)."""
    trace = llm.llm_engine.scheduler.trace
    return sum(n for step in trace for _, n in step.prefill) + sum(len(s.decode) for s in trace)


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_prefix_caching_keeps_greedy_outputs(scheduler):
    prompts = shared_prefix_prompts()
    kwargs = dict(**FP32, max_model_len=96, block_size=8, scheduler=scheduler, max_num_seqs=2)
    expected = token_ids(generate(LLM(MODEL, **kwargs), prompts))
    llm = LLM(MODEL, **kwargs, enable_prefix_caching=True)
    llm.llm_engine.scheduler.record_trace = True
    outputs = generate(llm, prompts)
    assert token_ids(outputs) == expected
    # Two at a time: each pair finds what earlier pairs computed. What is cached (block 0 of
    # the prefix after the first pair, all of it after the second) and what each prompt gets:
    assert [o.num_cached_tokens for o in outputs] == [0, 0, 8, 8, 32, 8, 24, 40, 16]
    computed = sum(len(p) for p in prompts) - 136 + len(prompts) * (GREEDY.max_tokens - 1)
    assert computed_tokens(llm) == computed
    kv = llm.llm_engine.kv_cache_manager
    assert kv.prefix_cache_hits == 136
    assert kv.prefix_cache_hit_rate == pytest.approx(136 / sum(len(p) for p in prompts))
    assert_all_blocks_free(llm)


def test_shared_system_prompt_is_computed_once():
    """32 requests behind one 1000-token system prompt: the first computes it, the other 31
    find all of it in the cache (1000 is a whole number of 8-token blocks) and compute only
    their own 8 tokens."""
    g = torch.Generator().manual_seed(1)
    system = random_tokens(1000, g)
    prompts = [system + random_tokens(8, g) for _ in range(32)]
    params = SamplingParams(temperature=0.0, max_tokens=3, ignore_eos=True)
    kwargs = dict(dtype="float32", num_gpu_blocks_override=512, max_model_len=1024,
                  block_size=8, max_num_batched_tokens=1024)
    llm = LLM(MODEL, **kwargs, enable_prefix_caching=True)
    llm.llm_engine.scheduler.record_trace = True
    outputs = generate(llm, prompts, params)
    prompt_tokens = sum(n for step in llm.llm_engine.scheduler.trace for _, n in step.prefill)
    assert prompt_tokens == 1000 + 32 * 8
    assert [o.num_cached_tokens for o in outputs] == [0] + [1000] * 31
    assert llm.llm_engine.kv_cache_manager.prefix_cache_hit_rate == pytest.approx(
        31 * 1000 / (32 * 1008))
    # Without the cache each prompt is computed in full; a few suffice to compare outputs.
    sample = [0, 1, 31]
    plain = generate(LLM(MODEL, **kwargs), [prompts[i] for i in sample], params)
    assert token_ids(plain) == [outputs[i].outputs[0].token_ids for i in sample]
    assert_all_blocks_free(llm)


def chunked_prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(2)
    return [random_tokens(n, g) for n in (3, 4, 70, 5, 6, 41, 2)]


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_chunked_prefill_keeps_greedy_outputs(scheduler):
    """A 7-token budget: long prompts run in many chunks beside the decodes of the others,
    some chunks of a single token that is not their prompt's last."""
    prompts = chunked_prompts()
    kwargs = dict(**FP32, max_model_len=96, block_size=8, scheduler=scheduler)
    expected = token_ids(generate(LLM(MODEL, **kwargs), prompts))
    llm = LLM(MODEL, **kwargs, enable_chunked_prefill=True, max_num_batched_tokens=7)
    llm.llm_engine.scheduler.record_trace = True
    assert token_ids(generate(llm, prompts)) == expected
    trace = llm.llm_engine.scheduler.trace
    assert all(sum(n for _, n in s.prefill) + len(s.decode) <= 7 for s in trace)
    assert any(s.prefill and s.decode for s in trace)
    if scheduler == "continuous":  # static batches admit no one beside the running decodes
        assert any(n == 1 for s in trace for _, n in s.prefill)  # 1 prompt token, not the last
    assert_all_blocks_free(llm)


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_triton_attention_with_both_extensions(scheduler):
    """Lab 2's kernels (interpreted on a CPU) see prefills that start after a cached prefix
    and chunks of every size; the greedy tokens are those of the PyTorch reference without
    either extension."""
    prompts = shared_prefix_prompts()
    kwargs = dict(**FP32, max_model_len=96, block_size=8, scheduler=scheduler, max_num_seqs=3)
    params = SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True)
    expected = token_ids(generate(LLM(MODEL, **kwargs, attention="torch"), prompts, params))
    llm = LLM(MODEL, **kwargs, attention="triton", enable_prefix_caching=True,
              enable_chunked_prefill=True, max_num_batched_tokens=16)
    outputs = generate(llm, prompts, params)
    assert token_ids(outputs) == expected
    assert sum(o.num_cached_tokens for o in outputs) > 0
    assert_all_blocks_free(llm)


def test_decodes_continue_while_a_long_prompt_is_prefilled():
    """Running streams keep producing a token every step while a long prompt arrives and is
    prefilled 12 tokens at a time beside their 4 decode tokens; without chunked prefill the
    whole prompt runs in one step."""
    g = torch.Generator().manual_seed(3)
    short = [random_tokens(5, g) for _ in range(4)]
    long = random_tokens(200, g)
    params = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True)
    results = {}
    for chunked in (False, True):
        extra = {"enable_chunked_prefill": True, "max_num_batched_tokens": 16} if chunked else {}
        llm = LLM(MODEL, **FP32, max_model_len=256, block_size=8, **extra)
        engine = llm.llm_engine
        engine.scheduler.record_trace = True
        for i, p in enumerate(short):
            engine.add_request(f"s{i}", p, params)
        engine.step()  # the four prompts
        engine.step()  # their first decode
        engine.add_request("long", long, params)
        long_id = engine.requests["long"].seqs[0].seq_id
        outputs = {}
        while engine.has_unfinished_requests():
            for out in engine.step():
                outputs[out.request_id] = out.outputs[0].token_ids
        prefill_steps = [s for s in engine.scheduler.trace if any(
            seq_id == long_id for seq_id, _ in s.prefill)]
        results[chunked] = (outputs, prefill_steps)
    whole, chunks = results[False][1], results[True][1]
    assert [n for _, n in whole[0].prefill] == [200] and len(whole) == 1
    assert [s.prefill[0][1] for s in chunks] == [12] * 16 + [8]
    assert all(len(s.decode) == 4 for s in chunks)  # nobody's stream paused
    assert results[True][0] == results[False][0]


def test_preemption_with_prefix_caching_and_chunked_prefill():
    """16 blocks for prompts that share a prefix and grow: sequences are preempted, give their
    blocks back, and on re-admission find their own blocks (and the shared prefix) again."""
    g = torch.Generator().manual_seed(4)
    prefix = random_tokens(16, g)
    prompts = [prefix + random_tokens(n, g) for n in (3, 17, 9, 25)] + [random_tokens(12, g)]
    params = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
    kwargs = dict(dtype="float32", max_model_len=96, block_size=8)
    expected = token_ids(generate(LLM(MODEL, **kwargs, num_gpu_blocks_override=64), prompts,
                                  params))
    for extra in ({"enable_prefix_caching": True},
                  {"enable_prefix_caching": True, "enable_chunked_prefill": True,
                   "max_num_batched_tokens": 10}):
        tight = LLM(MODEL, **kwargs, num_gpu_blocks_override=16, **extra)
        assert token_ids(generate(tight, prompts, params)) == expected
        assert tight.llm_engine.scheduler.num_preemptions > 0
        kv = tight.llm_engine.kv_cache_manager
        assert kv.prefix_cache_hits > 0
        assert_all_blocks_free(tight)


def test_prefix_caching_needs_the_paged_allocator():
    with pytest.raises(ValueError, match="kv_allocator='paged'"):
        LLM(MODEL, **FP32, max_model_len=64, kv_allocator="reserved",
            enable_prefix_caching=True)


def test_engine_logs_the_prefix_cache_hit_rate(caplog):
    llm = LLM(MODEL, **FP32, max_model_len=64, block_size=8, enable_prefix_caching=True,
              disable_log_stats=False)
    prompt = list(range(20))
    generate(llm, [prompt])
    llm.llm_engine.last_stats_log_time = float("-inf")  # due now
    # Listen on the "minivllm" logger itself: the server's log set-up (run in-process by other
    # tests) stops it propagating to the root logger, where caplog listens by default.
    logger = logging.getLogger("minivllm")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="minivllm"):
            generate(llm, [prompt])
    finally:
        logger.removeHandler(caplog.handler)
    assert "Prefix cache hit rate: 40.0%" in caplog.text  # 16 of 40 tokens looked up
