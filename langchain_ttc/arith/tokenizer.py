"""A byte-level tokenizer with a chat template for the Arith checkpoints.

In: nothing (or a directory). Out: a ``PreTrainedTokenizerFast`` whose files (``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json``, ``chat_template.jinja``) make
``AutoTokenizer``, ``apply_chat_template`` and vLLM's chat endpoint treat the Arith models exactly
like a real instruct model: ChatML turns, ``<|im_end|>`` as end of sequence, one token per byte
(a byte-level BPE without merges), and the Math-Shepherd step tag ``ки`` as one token.

Example:
    >>> tok = build_tokenizer()
    >>> tok.decode(tok("3+4=7")["input_ids"])
    '3+4=7'

"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
STEP_TAG = "ки"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the Arith tokenizer (deterministic: same ids on every machine)."""
    alphabet = sorted(ByteLevel.alphabet(), key=lambda ch: ord(ch))
    vocab = {ch: index for index, ch in enumerate(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    backend.add_tokens([STEP_TAG])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=IM_END,
        additional_special_tokens=[IM_START],
        padding_side="left",
        model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """Build the tokenizer and save its files to ``directory``."""
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(str(directory))
    return tokenizer
