"""Rendering a generation request into the exact text a model continues (no torch, no vLLM).

In: a tokenizer with a chat template and a :class:`~langchain_ttc.core.types.GenerationRequest`. Out: the
prompt text: the chat rendered with the template and a generation prompt, or, when the request has a
``partial`` assistant text, the chat with that text as the final assistant message, continued in
place (``continue_final_message``) rather than answered in a new turn.
"""

from __future__ import annotations

from typing import Any

from langchain_ttc.core.types import GenerationRequest


def render_prompt(tokenizer: Any, request: GenerationRequest) -> str:
    """The exact text the model continues: the chat template (or raw prompt) plus ``partial``.

    Raises:
        ValueError: If the request is a chat and the tokenizer has no chat template.
        TypeError: If the tokenizer's ``apply_chat_template(tokenize=False)`` does not return the text.

    """
    if request.messages is None:
        return (request.prompt or "") + request.partial
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer of {_name(tokenizer)!r} has no chat_template; pass prompt= instead of "
            "messages=, or a model whose tokenizer ships a chat template."
        )
    messages: list[dict[str, str]] = [dict(m) for m in request.messages]
    if not request.partial:
        return _chat_text(tokenizer, messages, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": request.partial})
    text = _chat_text(tokenizer, messages, continue_final_message=True)
    # Some templates trim the final message: put back any trailing whitespace they dropped.
    stripped = request.partial.rstrip()
    if not text.endswith(request.partial) and text.endswith(stripped):
        text += request.partial[len(stripped) :]
    return text


def _chat_text(tokenizer: Any, messages: list[dict[str, str]], **options: bool) -> str:
    """The chat rendered by the tokenizer's template, as text (checked: ``tokenizer`` is any object)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, **options)
    if not isinstance(text, str):
        raise TypeError(
            f"tokenizer of {_name(tokenizer)!r}: apply_chat_template(messages, tokenize=False) returned "
            f"{type(text).__name__}, not the prompt text; pass a Hugging Face tokenizer (a "
            "transformers.PreTrainedTokenizerBase) or one whose apply_chat_template returns a str when tokenize=False."
        )
    return text


def _name(tokenizer: Any) -> str:
    """The tokenizer's model name or path, for messages (its class name when it has none)."""
    return str(getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__)


def prompt_token_ids(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """The token ids of :func:`render_prompt`'s text: what every backend feeds the model.

    A rendered chat already holds its special tokens (no BOS is added again); a raw prompt gets the
    tokenizer's usual special tokens. The in-process engines and the server client all send these ids,
    so a chat template that trims message content cannot make the server path differ.
    """
    ids = tokenizer.encode(render_prompt(tokenizer, request), add_special_tokens=request.messages is None)
    return [int(i) for i in ids]
