"""Sampler and SamplingMetadata: greedy, seeded and truncated sampling, penalties, min_tokens
and logprobs, checked against hand computations and against empirical frequencies."""

import math

import pytest
import torch

from minivllm.model_executor.sampler import (
    Sampler,
    apply_min_p,
    apply_penalties,
    apply_top_k_top_p,
)
from minivllm.model_executor.sampling_metadata import SamplingMetadata
from minivllm.sampling_params import SamplingParams
from minivllm.sequence import Sequence

CPU = torch.device("cpu")
V = 32


def make_seq(params: SamplingParams, prompt=(1, 2, 3), output=(), index: int = 0) -> Sequence:
    seq = Sequence("req", list(prompt), params, index=index)
    seq.output_token_ids = list(output)
    return seq


def sample(seqs, logits):
    md = SamplingMetadata.from_sequences(seqs, logits.shape[1], CPU)
    return Sampler()(logits, md)


def logits_for(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs).log()


# -- greedy ---------------------------------------------------------------------------------

def test_temperature_zero_is_argmax_and_skips_the_random_path():
    torch.manual_seed(0)
    logits = torch.randn(6, V)
    seqs = [make_seq(SamplingParams(temperature=0.0, seed=i)) for i in range(6)]
    rng_before = torch.get_rng_state()
    md = SamplingMetadata.from_sequences(seqs, V, CPU)
    out = Sampler()(logits, md)
    assert torch.equal(out.sampled_token_ids, logits.argmax(dim=-1))
    assert out.sampled_token_ids.dtype == torch.int64
    # No random numbers were drawn and no generators were made: greedy is pure argmax.
    assert md.all_greedy and md.temperature is None and md.generators == {}
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(seq.generator is None for seq in seqs)
    assert out.logprobs is None and out.logprob_token_ids is None


def test_top_k_1_equals_greedy():
    torch.manual_seed(1)
    logits = torch.randn(64, V) * 3
    seqs = [make_seq(SamplingParams(temperature=1.5, top_k=1)) for _ in range(64)]
    for _ in range(5):
        assert torch.equal(sample(seqs, logits).sampled_token_ids, logits.argmax(dim=-1))


def test_mixed_batch_greedy_rows_stay_greedy():
    torch.manual_seed(2)
    logits = torch.randn(8, V)
    params = [SamplingParams(temperature=0.0), SamplingParams(temperature=1.0)] * 4
    seqs = [make_seq(p) for p in params]
    md = SamplingMetadata.from_sequences(seqs, V, CPU)
    assert not md.all_greedy and not md.all_random
    draws = torch.stack([Sampler()(logits, md).sampled_token_ids for _ in range(50)])
    greedy_rows = draws[:, 0::2]
    assert torch.equal(greedy_rows, logits.argmax(-1)[0::2].expand_as(greedy_rows))
    # The random rows do vary.
    assert all(len(set(draws[:, r].tolist())) > 1 for r in range(1, 8, 2))


# -- seeds ----------------------------------------------------------------------------------

def run_steps(seqs, steps: int, logits_fn) -> list[list[int]]:
    """Sample `steps` tokens for `seqs`, appending each; return the tokens of each sequence."""
    for step in range(steps):
        tokens = sample(seqs, logits_fn(step, len(seqs))).sampled_token_ids.tolist()
        for seq, token in zip(seqs, tokens, strict=True):
            seq.append_token(token)
    return [seq.output_token_ids for seq in seqs]


def flat_logits(step: int, batch: int) -> torch.Tensor:
    return torch.zeros(batch, V)  # uniform: every draw is pure noise from the generator


def test_same_seed_same_tokens_whatever_the_batch():
    seeded = SamplingParams(temperature=1.0, seed=1234)
    alone = run_steps([make_seq(seeded)], 20, flat_logits)[0]

    torch.manual_seed(99)  # the global RNG state must not matter either
    others = [make_seq(SamplingParams(temperature=0.9)), make_seq(SamplingParams(seed=5)),
              make_seq(SamplingParams(temperature=0.0))]
    batch = [others[0], make_seq(seeded), *others[1:]]
    assert run_steps(batch, 20, flat_logits)[1] == alone

    # Alone again, at a different position in a differently sized batch.
    batch = [*others, make_seq(SamplingParams(top_k=3)), make_seq(seeded)]
    assert run_steps(batch, 20, flat_logits)[-1] == alone


def test_all_seeded_batch_leaves_the_global_rng_alone():
    seqs = [make_seq(SamplingParams(seed=i)) for i in range(3)]
    rng_before = torch.get_rng_state()
    run_steps(seqs, 2, flat_logits)
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_seed_generator_lives_on_the_sequence():
    seq = make_seq(SamplingParams(seed=7))
    assert seq.generator is None
    tokens = run_steps([seq], 30, flat_logits)[0]
    assert isinstance(seq.generator, torch.Generator)
    # The stream continues across steps instead of restarting: not one token repeated 30 times.
    assert len(set(tokens)) > 5


def test_n_samples_of_a_seeded_request_differ_but_reproduce():
    params = SamplingParams(seed=3, n=2)
    first = run_steps([make_seq(params, index=0), make_seq(params, index=1)], 20, flat_logits)
    again = run_steps([make_seq(params, index=0), make_seq(params, index=1)], 20, flat_logits)
    assert first == again
    assert first[0] != first[1]
    other_seed = run_steps([make_seq(SamplingParams(seed=4))], 20, flat_logits)[0]
    assert other_seed != first[0]


# -- the distribution: temperature, top-k, top-p, min-p -------------------------------------

PROBS = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04]


def frequencies(params: SamplingParams, logits: torch.Tensor, draws: int = 40000) -> torch.Tensor:
    """Empirical token frequencies of `draws` rows sampled in one batch from `logits`."""
    torch.manual_seed(0)
    seqs = [make_seq(params) for _ in range(draws)]
    tokens = sample(seqs, logits.expand(draws, -1).contiguous()).sampled_token_ids
    return torch.bincount(tokens, minlength=logits.shape[0]).double() / draws


def expected(probs: list[float], keep: list[int]) -> torch.Tensor:
    p = torch.tensor([probs[i] if i in keep else 0.0 for i in range(len(probs))],
                     dtype=torch.float64)
    return p / p.sum()


@pytest.mark.parametrize("params, keep", [
    (SamplingParams(), [0, 1, 2, 3, 4, 5]),
    (SamplingParams(top_k=3), [0, 1, 2]),
    (SamplingParams(top_k=100), [0, 1, 2, 3, 4, 5]),  # larger than the vocabulary
    (SamplingParams(top_p=0.5), [0, 1]),      # 0.4 < 0.5 <= 0.4 + 0.25
    (SamplingParams(top_p=0.85), [0, 1, 2, 3]),
    (SamplingParams(top_p=0.3), [0]),         # the top token always stays
    (SamplingParams(min_p=0.3), [0, 1, 2]),   # p >= 0.3 * 0.4 = 0.12
    (SamplingParams(min_p=0.5), [0, 1]),      # p >= 0.2
    (SamplingParams(top_k=4, top_p=0.6), [0, 1]),
    (SamplingParams(top_k=5, min_p=0.2), [0, 1, 2, 3]),  # p >= 0.08
    (SamplingParams(top_p=0.85, min_p=0.5), [0, 1]),
])
def test_empirical_distribution(params, keep):
    freq = frequencies(params, logits_for(PROBS))
    assert (freq > 0).tolist() == [i in keep for i in range(len(PROBS))]
    assert torch.allclose(freq, expected(PROBS, keep), atol=0.01)


def test_temperature_sharpens_and_flattens():
    logits = logits_for(PROBS)
    for temperature in (0.5, 2.0):
        freq = frequencies(SamplingParams(temperature=temperature), logits)
        want = torch.softmax(logits.double() / temperature, dim=-1)
        assert torch.allclose(freq, want, atol=0.01)


def test_top_k_top_p_mask_exact_tokens():
    logits = logits_for(PROBS).expand(3, -1).contiguous()
    # Row 0: top-k 2; row 1: disabled (= vocabulary size); row 2: top-k 4.
    top_k = torch.tensor([2, len(PROBS), 4])
    masked = apply_top_k_top_p(logits, top_k, max_top_k=4, top_p=None)
    kept = torch.isfinite(masked)
    assert kept.tolist() == [[True, True, False, False, False, False], [True] * 6,
                             [True, True, True, True, False, False]]
    assert torch.equal(masked[kept], logits[kept])  # kept logits are untouched

    top_p = torch.tensor([1.0, 0.5, 0.9])
    kept = torch.isfinite(apply_top_k_top_p(logits, top_k, 4, top_p))
    assert kept.sum(dim=-1).tolist() == [2, 2, 4]
    kept = torch.isfinite(apply_top_k_top_p(logits, None, 0, top_p))
    assert kept.sum(dim=-1).tolist() == [6, 2, 4]


def test_tiny_top_p_keeps_the_top_token():
    # 1 - 1e-9 rounds to 1 in float32: without care every token would be dropped.
    logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))
    masked = apply_top_k_top_p(logits, None, 0, torch.full((4,), 1e-9))
    assert torch.equal(torch.isfinite(masked), logits == logits.amax(dim=-1, keepdim=True))


def test_top_k_keeps_ties():
    logits = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0]])
    masked = apply_top_k_top_p(logits, torch.tensor([2]), 2, None)
    assert torch.isfinite(masked).tolist() == [[True, False, True, False, True]]


def test_min_p_masks_below_threshold():
    logits = logits_for(PROBS).expand(2, -1)
    masked = apply_min_p(logits, torch.tensor([0.0, 0.3]))
    assert torch.isfinite(masked).tolist() == [[True] * 6, [True, True, True, False, False, False]]


# -- penalties --------------------------------------------------------------------------------

def penalised(params: SamplingParams, logits: torch.Tensor, prompt, output) -> torch.Tensor:
    md = SamplingMetadata.from_sequences([make_seq(params, prompt, output)], logits.shape[0], CPU)
    return apply_penalties(logits.unsqueeze(0), md)[0]


def test_repetition_penalty_on_prompt_and_output():
    logits = torch.tensor([2.0, -2.0, 4.0, -1.0, 3.0, 0.5])
    out = penalised(SamplingParams(repetition_penalty=2.0), logits, prompt=[0, 1], output=[2, 3])
    # Seen tokens 0..3: positive logits are divided, negative ones multiplied; 4, 5 untouched.
    assert torch.allclose(out, torch.tensor([1.0, -4.0, 2.0, -2.0, 3.0, 0.5]))


def test_frequency_and_presence_penalties_count_the_output_only():
    logits = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0])
    params = SamplingParams(frequency_penalty=0.5, presence_penalty=0.25)
    out = penalised(params, logits, prompt=[4, 4, 4], output=[0, 0, 0, 1, 2, 2])
    want = torch.tensor([1 - 3 * 0.5 - 0.25, 1 - 0.5 - 0.25, 1 - 2 * 0.5 - 0.25, 1.0, 1.0])
    assert torch.allclose(out, want)
    # Negative penalties reward repetition instead.
    out = penalised(SamplingParams(frequency_penalty=-1.0), logits, prompt=[], output=[3, 3])
    assert torch.allclose(out, torch.tensor([1.0, 1.0, 1.0, 3.0, 1.0]))


def test_penalties_per_row_and_greedy_choice_changes():
    logits = torch.tensor([[5.0, 4.0, 0.0], [5.0, 4.0, 0.0]])
    seqs = [make_seq(SamplingParams(temperature=0.0, repetition_penalty=1.5), [0], []),
            make_seq(SamplingParams(temperature=0.0), [0], [])]
    # Row 0 divides 5 by 1.5 (< 4), row 1 has no penalty.
    assert sample(seqs, logits).sampled_token_ids.tolist() == [1, 0]
    md = SamplingMetadata.from_sequences([make_seq(SamplingParams())], 3, CPU)
    assert md.no_penalties and md.prompt_token_ids is None


# -- min_tokens -------------------------------------------------------------------------------

EOS = 7


def test_min_tokens_blocks_eos_and_stop_tokens():
    params = SamplingParams(temperature=0.0, min_tokens=3, stop_token_ids=[5])
    params.update_from_generation_config({}, model_eos_token_id=EOS)
    logits = torch.zeros(1, V)
    logits[0, EOS], logits[0, 5], logits[0, 9] = 10.0, 9.0, 1.0
    for num_out in range(3):
        seq = make_seq(params, output=[9] * num_out)
        assert sample([seq], logits).sampled_token_ids.item() == 9
    assert sample([make_seq(params, output=[9] * 3)], logits).sampled_token_ids.item() == EOS


def test_min_tokens_in_a_random_batch_never_emits_eos():
    params = SamplingParams(min_tokens=1)
    params.update_from_generation_config({"eos_token_id": [EOS, 8]}, model_eos_token_id=EOS)
    logits = torch.zeros(2000, V)
    logits[:, [EOS, 8]] = 3.0  # EOS ids would be likely
    tokens = sample([make_seq(params) for _ in range(2000)], logits).sampled_token_ids
    assert not torch.isin(tokens, torch.tensor([EOS, 8])).any()
    free = sample([make_seq(params, output=[1]) for _ in range(2000)], logits).sampled_token_ids
    assert torch.isin(free, torch.tensor([EOS, 8])).any()


# -- logprobs ---------------------------------------------------------------------------------

def test_logprobs_are_raw_and_ranked():
    torch.manual_seed(3)
    logits = torch.randn(4, V) * 2
    params = [SamplingParams(temperature=0.7, top_k=5, logprobs=3, repetition_penalty=1.3),
              SamplingParams(temperature=0.0, logprobs=0, presence_penalty=1.0),
              SamplingParams(logprobs=None, min_p=0.1),
              SamplingParams(temperature=2.0, logprobs=2)]
    seqs = [make_seq(p, prompt=[0, 1], output=[2, 2]) for p in params]
    out = sample(seqs, logits)
    raw = torch.log_softmax(logits, dim=-1)
    assert out.logprobs.shape == out.logprob_token_ids.shape == (4, 4)
    assert out.logprob_token_ids.dtype == torch.int64 and out.logprobs.dtype == torch.float32

    sampled = out.sampled_token_ids
    assert torch.equal(out.logprob_token_ids[:, 0], sampled)
    assert torch.allclose(out.logprobs, raw.gather(1, out.logprob_token_ids))
    order = raw.argsort(dim=-1, descending=True)
    assert torch.equal(out.logprob_token_ids[:, 1:], order[:, :3])
    assert (out.logprobs[:, 1:].diff(dim=-1) <= 0).all()
    ranks = (order == sampled.unsqueeze(1)).nonzero()[:, 1] + 1
    assert torch.equal(out.sampled_token_ranks, ranks)


def test_logprobs_zero_returns_only_the_sampled_token():
    logits = torch.tensor([[0.0, 2.0, 1.0]])
    out = sample([make_seq(SamplingParams(temperature=0.0, logprobs=0))], logits)
    assert out.logprob_token_ids.tolist() == [[1]]
    assert out.logprobs.item() == pytest.approx(2.0 - math.log(1 + math.e**2 + math.e))
    assert out.sampled_token_ranks.tolist() == [1]


def test_metadata_skips_unused_features():
    md = SamplingMetadata.from_sequences(
        [make_seq(SamplingParams(temperature=0.8)), make_seq(SamplingParams(top_k=0))], V, CPU)
    assert md.all_random and not md.all_greedy
    assert md.top_k is None and md.top_p is None and md.min_p is None
    assert md.no_penalties and md.min_tokens_mask is None and md.max_num_logprobs is None
    assert md.generators == {}
