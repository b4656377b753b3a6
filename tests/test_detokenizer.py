"""IncrementalDetokenizer: text equal to a full decode at every step (multi-byte characters
split across tokens included), stop strings across token boundaries, streaming hold-back."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from minivllm.engine.detokenizer import IncrementalDetokenizer, find_stop_string
from minivllm.sampling_params import SamplingParams

CORPUS = ["Hello world, the quick brown fox jumps over the lazy dog.",
          "你好，世界！今天天气很好。", "Ça va? Très bien — naïve café 🙂🚀", "Привет, мир!"]


def byte_level_bpe() -> PreTrainedTokenizerFast:
    """A GPT-2 style tokenizer (like SmolLM2's, Qwen's, Llama 3's): byte-level BPE, so any
    byte is a token and unmerged characters are split over several tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|im_start|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_tokens([AddedToken("<tool>", special=False)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   clean_up_tokenization_spaces=False)


TOKENIZER = byte_level_bpe()


def stream(tokenizer, prompt_ids, output_ids, params, stop_terminated=False):
    """Feed `output_ids` one at a time; return the detokenizer, the text after each step and
    the stop string (if any), stopping at a match as the engine does."""
    detok = IncrementalDetokenizer(tokenizer, prompt_ids, params)
    texts = []
    for i, token_id in enumerate(output_ids):
        last = i == len(output_ids) - 1
        stop = detok.update([token_id], stop_terminated=stop_terminated and last)
        texts.append(detok.output_text)
        if stop is not None:
            return detok, texts, stop
    return detok, texts, None


# -- equal to a full decode -------------------------------------------------------------------

def check_matches_full_decode(tokenizer, prompt_ids, output_ids, skip_special_tokens):
    params = SamplingParams(skip_special_tokens=skip_special_tokens)
    _, texts, _ = stream(tokenizer, prompt_ids, output_ids, params)
    for step, text in enumerate(texts, start=1):
        full = tokenizer.decode(output_ids[:step], skip_special_tokens=skip_special_tokens)
        # Only an unfinished character at the very end ("�") is held back.
        assert full.startswith(text)
        if not full.endswith("\ufffd"):
            assert text == full


def test_multibyte_characters_split_across_tokens():
    text = "天气好吗 🚀🙂 naïve Ωmega ✓ done"
    ids = TOKENIZER.encode(text)
    # The test is only meaningful if some characters really are split over several tokens.
    assert any(TOKENIZER.decode([i]) == "\ufffd" for i in ids)
    assert TOKENIZER.decode(ids) == text
    check_matches_full_decode(TOKENIZER, TOKENIZER.encode("Hi"), ids, True)
    _, texts, _ = stream(TOKENIZER, [], ids, SamplingParams())
    assert texts[-1] == text
    assert not any("\ufffd" in t for t in texts)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(prompt=st.text(max_size=12),
       output_ids=st.lists(st.integers(0, len(TOKENIZER) + 3), min_size=1, max_size=25),
       skip_special_tokens=st.booleans())
def test_random_tokens_match_full_decode(prompt, output_ids, skip_special_tokens):
    """Random ids: lone UTF-8 lead and continuation bytes, special tokens, an added token, ids
    past the vocabulary."""
    check_matches_full_decode(TOKENIZER, TOKENIZER.encode(prompt), output_ids,
                              skip_special_tokens)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(prompt=st.text(max_size=12), output=st.text(min_size=1, max_size=30))
def test_encoded_text_round_trips(prompt, output):
    ids = TOKENIZER.encode(output)
    _, texts, _ = stream(TOKENIZER, TOKENIZER.encode(prompt), ids, SamplingParams())
    assert texts[-1] == output


def test_special_tokens_skipped_or_kept():
    ids = [*TOKENIZER.encode("ab"), TOKENIZER.convert_tokens_to_ids("<|im_start|>"),
           *TOKENIZER.encode("cd"), TOKENIZER.eos_token_id]
    _, texts, _ = stream(TOKENIZER, [], ids, SamplingParams(skip_special_tokens=True))
    assert texts[-1] == "abcd"
    _, texts, _ = stream(TOKENIZER, [], ids, SamplingParams(skip_special_tokens=False))
    assert texts[-1] == "ab<|im_start|>cd<|endoftext|>"


def test_first_token_continues_the_prompt():
    """SentencePiece-style decoders drop the space of the first token they decode; decoding
    with the prompt as context keeps it, so prompt text + output text reads right."""
    vocab = {"<unk>": 0, "▁Say": 1, "▁Hello": 2, "▁world": 3, "!": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                        clean_up_tokenization_spaces=False)
    assert tokenizer.decode([2, 3]) == "Hello world"  # alone, the leading space is dropped
    _, texts, _ = stream(tokenizer, [1], [2, 3, 4], SamplingParams())
    assert texts == [" Hello", " Hello world", " Hello world!"]
    assert tokenizer.decode([1]) + texts[-1] == tokenizer.decode([1, 2, 3, 4])


def test_update_with_several_tokens_at_once():
    ids = TOKENIZER.encode("naïve 🙂 café")
    one_by_one, _, _ = stream(TOKENIZER, [], ids, SamplingParams())
    detok = IncrementalDetokenizer(TOKENIZER, [], SamplingParams())
    detok.update(ids[:3])
    detok.update(ids[3:])
    assert detok.output_text == one_by_one.output_text == "naïve 🙂 café"


# -- stop strings -----------------------------------------------------------------------------

TEXT = "Hello world, the quick brown fox jumps over the lazy dog."
IDS = TOKENIZER.encode(TEXT)
PIECES = [TOKENIZER.decode([i]) for i in IDS]


def test_stop_string_across_token_boundary():
    stop = "quick br"
    assert not any(stop in piece for piece in PIECES)  # it spans two tokens
    detok, texts, matched = stream(TOKENIZER, [], IDS, SamplingParams(stop=[stop]))
    assert matched == stop
    assert detok.output_text == "Hello world, the "
    assert texts[:-1] == [TEXT[:len(t)] for t in texts[:-1]]  # ordinary text before the match
    assert len(texts) < len(IDS)  # the engine stops at the match

    detok, _, matched = stream(TOKENIZER, [], IDS,
                               SamplingParams(stop=[stop], include_stop_str_in_output=True))
    assert matched == stop
    assert detok.output_text == "Hello world, the quick br"  # cut after the stop string


def test_multibyte_stop_string_across_tokens():
    text = "今天天气好吗？天气很好。"
    ids = TOKENIZER.encode(text)
    detok, _, matched = stream(TOKENIZER, [], ids, SamplingParams(stop=["吗？天"]))
    assert matched == "吗？天"
    assert detok.output_text == "今天天气好"


def test_stop_string_first_to_complete_wins():
    params = SamplingParams(stop=["fox", "the", "world, t"])
    detok = IncrementalDetokenizer(TOKENIZER, [], params)
    assert detok.update(IDS) == "world, t"  # ends before "the" completes, and "fox"
    assert detok.output_text == "Hello "
    assert find_stop_string("xabc", 4, ["bc", "abc"], False) == ("abc", 1)  # same end: longer
    assert find_stop_string("abcab", 2, ["ab"], True) == ("ab", 5)  # only the new text counts
    assert find_stop_string("abcab", 1, ["ca"], False) is None  # ended in the old text


def test_stop_string_in_prompt_is_ignored():
    prompt = TOKENIZER.encode("Say the quick brown fox")
    detok, _, matched = stream(TOKENIZER, prompt, TOKENIZER.encode(" and more"),
                               SamplingParams(stop=["fox"]))
    assert matched is None and detok.output_text == " and more"


def test_min_tokens_delays_stop_strings():
    detok, _, matched = stream(TOKENIZER, [], IDS, SamplingParams(stop=["o"]))
    assert matched == "o" and detok.output_text == "Hell"
    # With min_tokens=k, the text of the first k tokens is not searched.
    k = next(i for i in range(1, len(IDS)) if "o" in "".join(PIECES[:i]))
    searched_from = len("".join(PIECES[:k]))
    detok, _, matched = stream(TOKENIZER, [], IDS, SamplingParams(stop=["o"], min_tokens=k))
    assert matched == "o" and detok.output_text == TEXT[:TEXT.index("o", searched_from)]
    assert detok.output_text.count("o") == 1


@pytest.mark.parametrize("include", [False, True])
def test_stop_token_text_follows_include_stop_str(include):
    ids = TOKENIZER.encode("fox.")
    params = SamplingParams(include_stop_str_in_output=include)
    detok, _, _ = stream(TOKENIZER, [], ids, params, stop_terminated=True)
    assert detok.output_text == ("fox." if include else "fox")


# -- streaming hold-back ------------------------------------------------------------------------

@pytest.mark.parametrize("stop", [["quick br"], ["fox!"], ["lazy dog.", "x"]])
def test_streamed_text_never_shows_what_a_stop_string_takes_back(stop):
    params = SamplingParams(stop=stop)
    detok = IncrementalDetokenizer(TOKENIZER, [], params)
    streamed = ""
    for token_id in IDS:
        finished = detok.update([token_id]) is not None or token_id == IDS[-1]
        streamed += detok.get_next_output_text(finished=finished, delta=True)
        assert detok.output_text.startswith(streamed)  # nothing shown is ever taken back
        if not finished:
            whole = detok.get_next_output_text(finished=False, delta=False)
            assert whole == detok.output_text[:max(len(detok.output_text)
                                                   - params.output_text_buffer_length, 0)]
        if finished:
            break
    assert streamed == detok.output_text
    assert detok.get_next_output_text(finished=True, delta=True) == ""


def test_without_stop_strings_nothing_is_held_back():
    detok = IncrementalDetokenizer(TOKENIZER, [], SamplingParams())
    detok.update(IDS[:3])
    assert detok.get_next_output_text(finished=False, delta=True) == "".join(PIECES[:3])
    detok.update(IDS[3:5])
    assert detok.get_next_output_text(finished=False, delta=True) == "".join(PIECES[3:5])
    assert detok.get_next_output_text(finished=False, delta=False) == "".join(PIECES[:5])


def test_hold_back_length_is_longest_stop_minus_one():
    detok = IncrementalDetokenizer(TOKENIZER, [], SamplingParams(stop=["zzzz"]))
    detok.update(IDS[:8])
    text = "".join(PIECES[:8])
    assert len(text) > 3
    assert detok.get_next_output_text(finished=False, delta=True) == text[:-3]
    assert detok.get_next_output_text(finished=False, delta=True) == ""
    assert detok.get_next_output_text(finished=True, delta=True) == text[-3:]
