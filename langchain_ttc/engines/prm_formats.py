"""How each published PRM reads a solution: token ids and the positions that hold each step's score.

Pure tokenizer work, no model. In: a tokenizer, a problem and its steps. Out: ``(ids, positions)``:
the PRM's input ids and, for each step, the position ``p`` such that the model's distribution over token ``p`` given
``ids[:p]`` holds P("+") and P("-") for that step. A backend then reads those two probabilities
(transformers: logits at ``p - 1``; vLLM: the prompt prefix ``ids[:p]`` with ``max_tokens=1``).

- :class:`MathShepherdFormat`: ``"{problem} {step 1} ки\\n{step 2} ки"``; read after each tag.
- :class:`RLHFlowFormat` (``RLHFlow/Llama3.1-8B-PRM-Deepseek-Data``): a chat where each step is a
  user turn (the first prefixed by the problem) and the assistant answers "+"; read at each "+".

Those two are *generative* formats (a language model's next-token distribution). The third is a
reward-model format, read from a classification head rather than from next-token probabilities:

- :class:`QwenMathFormat` (``Qwen/Qwen2.5-Math-PRM-7B``): the chat template with every step
  followed by ``<extra_0>``; ``positions`` are the indices of those tokens, where the model's
  two-class head holds P(bad) and P(good) for the step.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from langchain_ttc.engines.chat_template import encode_text
from langchain_ttc.engines.math_shepherd_format import (
    DEFAULT_BAD_TOKEN,
    DEFAULT_GOOD_TOKEN,
    DEFAULT_STEP_TAG,
    math_shepherd_text,
)

_SINGLE_TOKEN_IDS: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
"""Per tokenizer, the ids already checked (``encode`` asks for the step tag at every call)."""


def single_token_id(tokenizer: Any, token: str, *, parameter: str) -> int:
    """The id of ``token`` if the tokenizer has it as one token, else a clear ``ValueError``."""
    try:
        known = _SINGLE_TOKEN_IDS.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        known = {}
    if token in known:
        return known[token]
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1 or (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids):
        raise ValueError(
            f"{parameter}={token!r} is not a single token of the PRM tokenizer "
            f"{getattr(tokenizer, 'name_or_path', '')!r} (it encodes to {ids}); pass the {parameter} the PRM was "
            "trained with, or a PRM whose tokenizer has it."
        )
    known[token] = int(ids[0])
    return known[token]


@dataclass(frozen=True)
class MathShepherdFormat:
    """The Math-Shepherd protocol (``peiyi9979/math-shepherd-mistral-7b-prm``)."""

    step_tag: str = DEFAULT_STEP_TAG
    good_token: str = DEFAULT_GOOD_TOKEN
    bad_token: str = DEFAULT_BAD_TOKEN

    def check(self, tokenizer: Any) -> tuple[int, int]:
        """Check the tokenizer has the tag and the label tokens; return the (good, bad) ids."""
        single_token_id(tokenizer, self.step_tag, parameter="step_tag")
        return (
            single_token_id(tokenizer, self.good_token, parameter="good_token"),
            single_token_id(tokenizer, self.bad_token, parameter="bad_token"),
        )

    def encode(self, tokenizer: Any, problem: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """The input ids and, per step, the position just after its tag."""
        tag = single_token_id(tokenizer, self.step_tag, parameter="step_tag")
        ids = encode_text(tokenizer, math_shepherd_text(problem, steps, self.step_tag), add_special_tokens=True)
        positions = [i + 1 for i, token in enumerate(ids) if token == tag]
        if positions and positions[-1] == len(ids):
            ids.append(single_token_id(tokenizer, self.good_token, parameter="good_token"))  # a slot to read from
        return ids, positions


@dataclass(frozen=True)
class RLHFlowFormat:
    """The RLHFlow protocol (``RLHFlow/Llama3.1-8B-PRM-Deepseek-Data`` and its Mistral sibling)."""

    good_token: str = "+"
    bad_token: str = "-"

    def check(self, tokenizer: Any) -> tuple[int, int]:
        """Check the tokenizer has a chat template and the label tokens; return the (good, bad) ids."""
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"the PRM tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat_template; the RLHFlow "
                "protocol writes each step as a chat turn. Pass a PRM whose tokenizer ships one."
            )
        return (
            single_token_id(tokenizer, self.good_token, parameter="good_token"),
            single_token_id(tokenizer, self.bad_token, parameter="bad_token"),
        )

    def encode(self, tokenizer: Any, problem: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """The chat's ids and, per step, the position of the assistant's "+" that answers it."""
        conversation: list[dict[str, str]] = []
        positions = []
        for index, step in enumerate(steps):
            conversation.append({"role": "user", "content": f"{problem} {step}" if index == 0 else step})
            conversation.append({"role": "assistant", "content": self.good_token})
            prefix = tokenizer.apply_chat_template(conversation, tokenize=False, continue_final_message=True)
            positions.append(len(encode_text(tokenizer, prefix, add_special_tokens=False)) - 1)
        text = tokenizer.apply_chat_template(conversation, tokenize=False)
        return encode_text(tokenizer, text, add_special_tokens=False), positions


QWEN_STEP_TOKEN = "<extra_0>"
QWEN_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class QwenMathFormat:
    """The Qwen2.5-Math-PRM protocol (a token-classification reward model, positive class 1)."""

    step_token: str = QWEN_STEP_TOKEN
    system_prompt: str = QWEN_SYSTEM_PROMPT

    def check(self, tokenizer: Any) -> int:
        """Check the tokenizer has a chat template and the step token; return the step token's id."""
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"the PRM tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat_template; the Qwen "
                "protocol writes the solution as the assistant turn of a chat. Pass the PRM's own tokenizer."
            )
        return single_token_id(tokenizer, self.step_token, parameter="step_token")

    def encode(self, tokenizer: Any, problem: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """The chat's ids and, per step, the index of the step token that follows it."""
        step_id = single_token_id(tokenizer, self.step_token, parameter="step_token")
        body = "".join(f"{step.replace(self.step_token, '')}{self.step_token}" for step in steps)
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": problem},
            {"role": "assistant", "content": body},
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        ids = encode_text(tokenizer, str(text), add_special_tokens=False)
        return ids, [i for i, token in enumerate(ids) if token == step_id]


GenerativeFormat = MathShepherdFormat | RLHFlowFormat
"""Formats read from a language model's next-token probabilities of the good and bad label tokens."""

PRMFormat = GenerativeFormat | QwenMathFormat
