"""A tokenizer that needs no files: one token per byte (for the `random:<preset>` models).

Random weights have nothing to say, but the engine, server and benchmarks still need a real
tokenizer: text in, ids out, every id decodable, a chat template. A byte-level tokenizer is the
smallest honest one:

    id 0..255       the bytes 0x00..0xff (so "hi" is [104, 105])
    id 256..258     <|endoftext|>, <|im_start|>, <|im_end|>: special, never split; EOS is
                    <|im_end|>
    id 259..V-1     <|reserved_N|> fillers up to the model's vocab size, so any id a random
                    model samples decodes to something

It is built with the `tokenizers` library as GPT-2 builds its own: a BPE model over the 256
byte symbols (with no merges, so nothing ever combines) behind a ByteLevel pre-tokenizer and
decoder, which map raw bytes to printable stand-in characters and back.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
ENDOFTEXT_ID, IM_START_ID, IM_END_ID = 256, 257, 258
NUM_BASE_TOKENS = 256 + len(SPECIAL_TOKENS)

# ChatML, the format Qwen and SmolLM2 chat in.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character: printable bytes stand for
    themselves, the others (space, control bytes, ...) get characters from U+0100 on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def build_byte_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A ChatML byte-level tokenizer whose ids cover exactly `vocab_size` tokens."""
    if vocab_size < NUM_BASE_TOKENS:
        raise ValueError(f"vocab_size must be at least {NUM_BASE_TOKENS}, got {vocab_size}")
    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    for i, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = 256 + i
    for token_id in range(NUM_BASE_TOKENS, vocab_size):
        vocab[f"<|reserved_{token_id}|>"] = token_id

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t in SPECIAL_TOKENS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False)
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped
