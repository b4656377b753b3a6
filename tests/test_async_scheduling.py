"""Async scheduling (the engine prepares step N+1 while step N runs) changes when the host learns
each token, never which token: every output must equal the synchronous engine's, whatever
stops a sequence (length, stop token, stop string, max_model_len), under preemption, prefix
caching and either scheduler, with aborts in the middle, and with no KV block left behind."""

import random

import pytest

from minivllm import LLM, SamplingParams
from minivllm.sampling_params import RequestOutputKind
from minivllm.sequence import PLACEHOLDER_TOKEN_ID

MODEL = "random:tiny-llama"
# float32 on every device: the two engines must agree token for token. A fixed, small KV pool:
# on a GPU an engine would otherwise take 90% of the memory, and two are alive at once.
BASE = {"dtype": "float32", "max_model_len": 128, "num_gpu_blocks_override": 256}


def workload(seed: int = 0) -> tuple[list[list[int]], list[SamplingParams]]:
    rng = random.Random(seed)
    prompts = [[rng.randrange(500) for _ in range(rng.randint(3, 40))] for _ in range(12)]
    prompts[5] = prompts[4] + [1, 2, 3]  # shares a prefix with prompt 4
    params = [SamplingParams(temperature=0, max_tokens=rng.randint(1, 60), ignore_eos=True)
              for _ in prompts]
    params[2] = SamplingParams(temperature=0.8, seed=3, n=2, max_tokens=30)
    params[3] = SamplingParams(temperature=0, max_tokens=30, logprobs=3)
    params[6] = SamplingParams(temperature=0, max_tokens=500)  # stops at max_model_len
    params[8] = SamplingParams(temperature=0, max_tokens=50, min_tokens=5)
    return prompts, params


def generate(async_scheduling: bool, prompts, params, **kwargs):
    llm = LLM(MODEL, async_scheduling=async_scheduling, **{**BASE, **kwargs})
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    engine = llm.llm_engine
    assert engine.in_flight is None and not engine.has_unfinished_requests()
    kv = engine.kv_cache_manager
    assert kv.num_free_blocks == kv.num_blocks, "a KV block was not given back"
    # Logprobs as (token, rank, value) triples: the value's last bits depend on which rows
    # share the matmul, which an extra step for a stopped sequence can change.
    return [[(c.token_ids, c.text, c.finish_reason, c.stop_reason,
              c.logprobs and [[(t, lp.rank, pytest.approx(lp.logprob, abs=1e-5))
                               for t, lp in entry.items()] for entry in c.logprobs])
             for c in o.outputs] for o in outputs], engine.scheduler.num_preemptions


def with_stops(prompts, params):
    """Stop conditions taken from a first synchronous run, so that they do fire mid-output."""
    outputs, _ = generate(False, prompts, params)
    params = list(params)
    token_ids, text = outputs[0][0][0], outputs[1][0][1]
    params[0] = SamplingParams(temperature=0, max_tokens=60, stop_token_ids=[token_ids[10]])
    params[1] = SamplingParams(temperature=0, max_tokens=60, stop=[text[15:18]])
    return params


@pytest.mark.parametrize("kwargs", [
    {},
    {"num_gpu_blocks_override": 20},  # preemption
    {"enable_prefix_caching": True, "num_gpu_blocks_override": 20},
    {"scheduler": "static", "num_gpu_blocks_override": 20},
    {"enable_chunked_prefill": True, "max_num_batched_tokens": 16},
], ids=["plain", "preemption", "prefix-caching", "static", "chunked-prefill"])
def test_same_outputs_as_synchronous_engine(kwargs):
    prompts, params = workload()
    params = with_stops(prompts, params)
    sync_out, sync_preemptions = generate(False, prompts, params, **kwargs)
    async_out, async_preemptions = generate(True, prompts, params, **kwargs)
    assert async_out == sync_out
    if "num_gpu_blocks_override" in kwargs:  # (the counts may differ: a sequence that stops on
        # a token's value runs one step more with async scheduling, holding its blocks)
        assert sync_preemptions > 0 and async_preemptions > 0, "the small cache should preempt"
    finish = {c[2] for o in sync_out for c in o}
    assert finish == {"stop", "length"}
    assert any(c[3] is not None for o in sync_out for c in o), "no stop token/string fired"


@pytest.mark.parametrize("kwargs", [
    {"num_gpu_blocks_override": 12},
    {"num_gpu_blocks_override": 12, "enable_chunked_prefill": True, "max_num_batched_tokens": 16},
], ids=["preemption", "chunked-prefill-preemption"])
def test_same_batches_when_only_lengths_stop(kwargs):
    """When only max_tokens ends sequences, the end is known before the last token is: both
    engines must schedule exactly the same steps (same batches, preemptions and blocks)."""
    prompts, _ = workload()
    params = [SamplingParams(temperature=0, max_tokens=7 * i % 50 + 1, ignore_eos=True)
              for i in range(len(prompts))]
    runs = []
    for async_scheduling in (False, True):
        llm = LLM(MODEL, async_scheduling=async_scheduling, **{**BASE, **kwargs})
        scheduler = llm.llm_engine.scheduler
        scheduler.record_trace = True
        outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params,
                               use_tqdm=False)
        first = min(seq_id for t in scheduler.trace for seq_id, _ in t.prefill)
        trace = [(t.step, [(i - first, n) for i, n in t.prefill], [i - first for i in t.decode],
                  [i - first for i in t.preempted], t.num_waiting, t.num_blocks_used)
                 for t in scheduler.trace]  # seq ids count from this engine's first sequence
        runs.append(([o.outputs[0].token_ids for o in outputs], trace,
                     scheduler.num_preemptions))
    assert runs[0][2] > 0, "the small cache should force preemptions"
    assert runs[1] == runs[0]


def test_step_returns_before_the_tokens_are_known():
    llm = LLM(MODEL, async_scheduling=True, **BASE)
    engine = llm.llm_engine
    engine.add_request("a", [1, 2, 3], SamplingParams(temperature=0, max_tokens=4,
                                                      ignore_eos=True))
    assert engine.step() == []  # the prefill is launched; nothing is known yet
    seq = engine.requests["a"].seqs[0]
    assert seq.output_token_ids == [PLACEHOLDER_TOKEN_ID]
    outputs = engine.step()  # launches the first decode, then reads the prefill's token
    assert len(outputs) == 1 and len(outputs[0].outputs[0].token_ids) == 1
    assert seq.output_token_ids[0] != PLACEHOLDER_TOKEN_ID
    assert seq.output_token_ids[-1] == PLACEHOLDER_TOKEN_ID
    while engine.has_unfinished_requests():
        outputs = engine.step()
    assert len(outputs[0].outputs[0].token_ids) == 4 and outputs[0].finished


def test_penalties_run_one_step_at_a_time():
    """Penalties need the output's token values: no placeholders while such a request runs."""
    llm = LLM(MODEL, async_scheduling=True, **BASE)
    engine = llm.llm_engine
    engine.add_request("p", [1, 2, 3], SamplingParams(temperature=0, max_tokens=5,
                                                      repetition_penalty=1.5))
    engine.step()
    assert engine.in_flight is None
    assert PLACEHOLDER_TOKEN_ID not in engine.requests["p"].seqs[0].output_token_ids


def streams_with_an_abort(async_scheduling: bool) -> tuple[dict[str, list[int]], LLM]:
    """Four requests streamed step by step; request "1" is aborted before the sixth step."""
    prompts, _ = workload(seed=1)
    params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True,
                            output_kind=RequestOutputKind.CUMULATIVE)
    llm = LLM(MODEL, async_scheduling=async_scheduling, **BASE)
    engine = llm.llm_engine
    for i, p in enumerate(prompts[:4]):
        engine.add_request(str(i), p, params)
    streamed: dict[str, list[int]] = {}
    for step in range(200):
        if step == 5:
            engine.abort_request("1")
        for out in engine.step():
            assert out.request_id != "1" or step < 5, "output for an aborted request"
            streamed[out.request_id] = out.outputs[0].token_ids
        if not engine.has_unfinished_requests():
            break
    return streamed, llm


def test_abort_while_a_step_is_in_flight():
    """Both engines run the same batches, so the same tokens; the aborted request's stream
    stops early, one token earlier with async scheduling (its last token was in flight)."""
    sync, _ = streams_with_an_abort(False)
    overlapped, llm = streams_with_an_abort(True)
    kv = llm.llm_engine.kv_cache_manager
    assert kv.num_free_blocks == kv.num_blocks
    for i in "023":
        assert overlapped[i] == sync[i] and len(sync[i]) == 40
    assert len(sync["1"]) == 5 and overlapped["1"] == sync["1"][:4]
