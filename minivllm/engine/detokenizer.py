"""Incremental detokenization and stop strings: the text of a sequence, one token at a time.

Mirrors vLLM's `IncrementalDetokenizer` (`vllm/v1/engine/detokenizer.py`) and
`detokenize_incrementally` (`vllm/transformers_utils/detokenizer_utils.py`).

Why not `tokenizer.decode([token])` per step? A token is not a piece of text:

* byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM2) splits one character into several tokens when
  its UTF-8 bytes are not merged, e.g. 🙂 = F0 9F 99 82 may come as three tokens; decoded
  alone, each is "�";
* SentencePiece-style decoders drop the leading space of the first token they decode, and some
  tokenizers clean up spaces depending on the neighbouring tokens.

So each step decodes a small window of recent tokens twice, with and without the new tokens,
and emits the difference. Two offsets into the token list delimit it:

    tokens:  ... already emitted ... | prefix_offset ... read_offset | new (not yet emitted)
                                     <--- prefix text (context) ---><--- new text ------->

If the new text ends in "�" (an unfinished UTF-8 character) nothing is emitted and the offsets
stay, so the next token completes the character. The window starts with the last prompt tokens
so that the first output token is decoded as a continuation of the prompt.

Stop strings are searched only in the newly added text plus `len(stop) - 1` characters before
it (a stop string may span tokens and steps), and the text is cut before the match (or after
it with `include_stop_str_in_output`). A stream holds back the last
`SamplingParams.output_text_buffer_length` characters until the sequence finishes: they may be
the start of a stop string that would then have to be taken back.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from minivllm.sampling_params import SamplingParams

INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET = 5
"""Tokens of context before the read offset: enough for any decoder's look-behind."""


class IncrementalDetokenizer:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_token_ids: list[int],
                 params: SamplingParams) -> None:
        self.tokenizer = tokenizer
        self.stop: list[str] = list(params.stop)
        self.include_stop_str_in_output = params.include_stop_str_in_output
        self.min_tokens = params.min_tokens
        self.stop_buffer_length = params.output_text_buffer_length

        # What `tokenizer.decode(..., skip_special_tokens=True)` drops: the added tokens
        # marked special (chat markers, EOS, ...), not only the named bos/eos/pad/unk.
        self._skipped_ids: set[int] = set()
        if params.skip_special_tokens:
            self._skipped_ids = set(tokenizer.all_special_ids) | {
                token_id for token_id, added in tokenizer.added_tokens_decoder.items()
                if added.special}
        self._vocab_len = len(tokenizer)

        # Two tokens more than the context, in case some of them are skipped special tokens.
        self.tokens = self._to_tokens(
            prompt_token_ids[-(INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET + 2):])
        self.read_offset = len(self.tokens)
        self.prefix_offset = max(self.read_offset - INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET, 0)

        self.num_output_tokens = 0
        self._output_text = ""
        self._last_output_text_offset = 0
        """How much of the text `get_next_output_text(delta=True)` has returned so far."""

    @property
    def output_text(self) -> str:
        """The output's text so far (cut at a matched stop string)."""
        return self._output_text

    def _to_tokens(self, token_ids: list[int]) -> list[str]:
        """Token strings of `token_ids`, dropping skipped special tokens. Ids the tokenizer does
        not know (models pad their embedding table past it) become empty strings."""
        return [(0 <= token_id < self._vocab_len
                 and self.tokenizer.convert_ids_to_tokens(token_id)) or ""
                for token_id in token_ids if token_id not in self._skipped_ids]

    def _decode_next(self, token_id: int) -> str:
        """Add one token; return the text it completes ("" while a character is unfinished)."""
        self.tokens += self._to_tokens([token_id])
        prefix_text = self.tokenizer.convert_tokens_to_string(
            self.tokens[self.prefix_offset:self.read_offset])
        new_text = self.tokenizer.convert_tokens_to_string(self.tokens[self.prefix_offset:])
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.tokens)
        return new_text[len(prefix_text):]

    def update(self, new_token_ids: list[int], stop_terminated: bool = False) -> str | None:
        """Append the text of `new_token_ids`, then look for stop strings.

        Returns the stop string that matched, or None. On a match the text ends right before
        it (right after it with `include_stop_str_in_output`) and the sequence should finish.
        `stop_terminated`: the last token is EOS or a stop token id that ends the sequence; like
        any stop, its text is left out unless `include_stop_str_in_output`. Stop strings are
        not looked for within the first `min_tokens` tokens' text.
        """
        skip_last = stop_terminated and not self.include_stop_str_in_output
        stop_check_offset = len(self._output_text)
        for token_id in new_token_ids[:-1] if skip_last else new_token_ids:
            self._output_text += self._decode_next(token_id)
            self.num_output_tokens += 1
            if self.num_output_tokens <= self.min_tokens:
                stop_check_offset = len(self._output_text)
        if skip_last:
            self.num_output_tokens += 1  # counted, never decoded

        if not self.stop or self.num_output_tokens <= self.min_tokens:
            return None
        match = find_stop_string(self._output_text, len(self._output_text) - stop_check_offset,
                                 self.stop, self.include_stop_str_in_output)
        if match is None:
            return None
        stop_str, truncate_to = match
        self._output_text = self._output_text[:truncate_to]
        return stop_str

    def get_next_output_text(self, finished: bool, delta: bool) -> str:
        """Text that is safe to show: all of it once `finished`, otherwise all but the last
        `output_text_buffer_length` characters. With `delta`, only what previous calls with
        `delta` have not returned yet (for streaming)."""
        length = len(self._output_text)
        if not finished:
            length = max(length - self.stop_buffer_length, 0)
        if not delta:
            return self._output_text[:length]
        start = self._last_output_text_offset
        if length <= start:
            return ""
        self._last_output_text_offset = length
        return self._output_text[start:length]


def find_stop_string(text: str, new_char_count: int, stop: list[str],
                     include_in_output: bool) -> tuple[str, int] | None:
    """The stop string that completes first in the last `new_char_count` characters of `text`,
    and the length to cut the text to; None if none does.

    Only matches that end in the new text count (older text was searched before), so the
    search for `s` starts `len(s) - 1` characters before the new text. If several complete,
    the one ending first wins, as it would have if the text had arrived a character at a time
    (vLLM takes the first in list order, which can leave an earlier stop string in the text).
    """
    if new_char_count <= 0:
        return None
    best: tuple[int, int, str] | None = None  # (end, start, stop string)
    for stop_str in stop:
        start = text.find(stop_str, max(len(text) - new_char_count - len(stop_str) + 1, 0))
        if start != -1:
            candidate = (start + len(stop_str), start, stop_str)
            best = candidate if best is None else min(best, candidate)
    if best is None:
        return None
    end, start, stop_str = best
    return stop_str, end if include_in_output else start
