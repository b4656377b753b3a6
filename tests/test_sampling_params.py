"""SamplingParams: vLLM's defaults, normalisation, validation and stop-token bookkeeping."""

import pytest

from minivllm.sampling_params import SamplingParams, SamplingType


def test_defaults_match_vllm():
    p = SamplingParams()
    assert (p.n, p.temperature, p.top_p, p.top_k, p.min_p) == (1, 1.0, 1.0, 0, 0.0)
    assert (p.presence_penalty, p.frequency_penalty, p.repetition_penalty) == (0.0, 0.0, 1.0)
    assert (p.max_tokens, p.min_tokens, p.logprobs, p.seed) == (16, 0, None, None)
    assert p.stop == [] and p.stop_token_ids == [] and not p.ignore_eos
    assert p.skip_special_tokens and p.spaces_between_special_tokens
    assert not p.include_stop_str_in_output
    assert p.output_text_buffer_length == 0
    assert p.all_stop_token_ids == set()
    assert p.sampling_type == SamplingType.RANDOM


def test_normalisation():
    p = SamplingParams(stop="###", top_k=-1, seed=-1, stop_token_ids=[5, 6])
    assert p.stop == ["###"]
    assert p.top_k == 0
    assert p.seed is None
    assert p.all_stop_token_ids == {5, 6}
    assert SamplingParams(stop=("a", "bc")).stop == ["a", "bc"]


@pytest.mark.parametrize("temperature", [0.0, 1e-6])
def test_greedy_resets_truncation(temperature):
    p = SamplingParams(temperature=temperature, top_p=0.5, top_k=3, min_p=0.2, seed=7)
    assert p.sampling_type == SamplingType.GREEDY
    assert (p.top_p, p.top_k, p.min_p) == (1.0, 0, 0.0)


def test_sampling_type():
    assert SamplingParams(temperature=0.7).sampling_type == SamplingType.RANDOM
    assert SamplingParams(temperature=0.7, seed=0).sampling_type == SamplingType.RANDOM_SEED
    assert SamplingParams(temperature=1e-4, top_k=3).top_k == 3  # above eps: not greedy


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be at least 1"),
    ({"n": 1.5}, "n must be an int"),
    ({"presence_penalty": 2.5}, "presence_penalty must be in"),
    ({"presence_penalty": -2.1}, "presence_penalty must be in"),
    ({"frequency_penalty": 3.0}, "frequency_penalty must be in"),
    ({"frequency_penalty": -2.01}, "frequency_penalty must be in"),
    ({"repetition_penalty": 0.0}, "repetition_penalty must be greater than zero"),
    ({"repetition_penalty": -1.0}, "repetition_penalty must be greater than zero"),
    ({"temperature": -0.1}, "temperature must be non-negative"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.1}, r"top_p must be in \(0, 1\]"),
    ({"top_k": -2}, "top_k must be 0"),
    ({"top_k": 2.0}, "top_k must be an integer"),
    ({"min_p": -0.1}, r"min_p must be in \[0, 1\]"),
    ({"min_p": 1.5}, r"min_p must be in \[0, 1\]"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"max_tokens": 0}, "max_tokens must be at least 1"),
    ({"min_tokens": -1}, "min_tokens must be greater than or equal to 0"),
    ({"min_tokens": 5, "max_tokens": 4}, "min_tokens must be less than or equal to max_tokens"),
    ({"logprobs": -1}, "logprobs must be non-negative"),
    ({"stop": ["ok", ""]}, "stop cannot contain an empty string"),
    ({"stop": ""}, "stop cannot contain an empty string"),
    ({"stop_token_ids": [3, -1]}, "stop_token_ids must be non-negative integers"),
])
def test_invalid_params_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


def test_valid_edge_values():
    SamplingParams(presence_penalty=-2.0, frequency_penalty=2.0, top_p=1.0, min_p=1.0,
                   top_k=0, max_tokens=None, min_tokens=100, logprobs=0, temperature=0.0)
    SamplingParams(min_tokens=4, max_tokens=4, repetition_penalty=1e-3, n=3)


def test_verify_max_logprobs():
    SamplingParams(logprobs=20).verify_max_logprobs(20)
    SamplingParams().verify_max_logprobs(0)
    with pytest.raises(ValueError, match="greater than max allowed: 20"):
        SamplingParams(logprobs=21).verify_max_logprobs(20)


def test_output_text_buffer_length():
    assert SamplingParams(stop=["a", "four"]).output_text_buffer_length == 3
    assert SamplingParams(stop=["x"]).output_text_buffer_length == 0
    # A stop string that stays in the output never has to be taken back.
    assert SamplingParams(stop=["four"], include_stop_str_in_output=True
                          ).output_text_buffer_length == 0


def test_update_from_generation_config_adds_eos_ids():
    p = SamplingParams(stop_token_ids=[9])
    p.update_from_generation_config({"eos_token_id": [2, 7]}, model_eos_token_id=2)
    assert p.all_stop_token_ids == {2, 7, 9}
    # The extra EOS id becomes a stop token id (reported as stop_reason); the primary one not.
    assert p.stop_token_ids == [9, 7]

    p = SamplingParams()
    p.update_from_generation_config({"eos_token_id": 4}, model_eos_token_id=None)
    assert p.all_stop_token_ids == {4} and p.stop_token_ids == [4]

    p = SamplingParams()
    p.update_from_generation_config({}, model_eos_token_id=3)
    assert p.all_stop_token_ids == {3} and p.stop_token_ids == []


def test_update_from_generation_config_is_idempotent():
    p = SamplingParams(stop_token_ids=[7])
    for _ in range(2):
        p.update_from_generation_config({"eos_token_id": [1, 7, 8]}, model_eos_token_id=1)
    assert p.all_stop_token_ids == {1, 7, 8}
    assert p.stop_token_ids == [7, 8]


def test_ignore_eos_keeps_only_stop_token_ids():
    p = SamplingParams(ignore_eos=True, stop_token_ids=[5])
    p.update_from_generation_config({"eos_token_id": [2, 7]}, model_eos_token_id=2)
    assert p.all_stop_token_ids == {5}
    assert p.stop_token_ids == [5]
