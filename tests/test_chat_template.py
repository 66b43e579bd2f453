"""Rendering requests into prompt text with any tokenizer-like object (no model, no torch)."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_ttc.core.types import GenerationRequest
from langchain_ttc.engines.chat_template import render_prompt


class TemplateTokenizer:
    """A tokenizer whose chat template is plain ``role: content`` lines (trimming the final message)."""

    name_or_path = "scripted"
    chat_template = "{{ lines }}"

    def __init__(self, returns: Any = None) -> None:
        self.returns = returns

    def apply_chat_template(self, messages: list[dict[str, str]], *, tokenize: bool, **options: Any) -> Any:
        assert tokenize is False
        if self.returns is not None:
            return self.returns
        text = "".join(f"{m['role']}: {m['content'].strip()}\n" for m in messages)
        return text.rstrip("\n") if options.get("continue_final_message") else text + "assistant: "


CHAT = [{"role": "user", "content": "What is 2+3?"}]


def test_a_chat_is_rendered_with_the_template_and_a_partial_answer_continued_in_place() -> None:
    tokenizer = TemplateTokenizer()
    assert render_prompt(tokenizer, GenerationRequest(messages=CHAT)) == "user: What is 2+3?\nassistant: "
    continued = render_prompt(tokenizer, GenerationRequest(messages=CHAT, partial="2+3=5.\n\n"))
    assert continued == "user: What is 2+3?\nassistant: 2+3=5.\n\n"  # the trimmed whitespace is put back
    assert render_prompt(tokenizer, GenerationRequest(prompt="2+3=", partial="5")) == "2+3=5"


@pytest.mark.parametrize("partial", ["", "2+3=5."])
def test_a_template_that_does_not_return_text_is_a_clear_type_error(partial: str) -> None:
    tokenizer = TemplateTokenizer(returns=[1, 2, 3])
    says = (
        r"tokenizer of 'scripted': apply_chat_template\(messages, tokenize=False\) returned list, not the prompt text"
    )
    with pytest.raises(TypeError, match=says + "; pass a Hugging Face tokenizer"):
        render_prompt(tokenizer, GenerationRequest(messages=CHAT, partial=partial))


def test_a_tokenizer_without_a_chat_template_is_refused_for_chats() -> None:
    class Bare:
        chat_template = None

    with pytest.raises(ValueError, match=r"tokenizer of 'Bare' has no chat_template; pass prompt="):
        render_prompt(Bare(), GenerationRequest(messages=CHAT))
