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

    """
    if request.messages is None:
        return (request.prompt or "") + request.partial
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer of {tokenizer.name_or_path!r} has no chat_template; pass prompt= instead of "
            "messages=, or a model whose tokenizer ships a chat template."
        )
    messages: list[dict[str, str]] = [dict(m) for m in request.messages]
    if not request.partial:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert isinstance(text, str)
        return text
    messages.append({"role": "assistant", "content": request.partial})
    text = tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    assert isinstance(text, str)
    # Some templates trim the final message: put back any trailing whitespace they dropped.
    stripped = request.partial.rstrip()
    if not text.endswith(request.partial) and text.endswith(stripped):
        text += request.partial[len(stripped) :]
    return text


def prompt_token_ids(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """The token ids of :func:`render_prompt`'s text: what every backend feeds the model.

    A rendered chat already holds its special tokens (no BOS is added again); a raw prompt gets the
    tokenizer's usual special tokens. The in-process engines and the server client all send these ids,
    so a chat template that trims message content cannot make the server path differ.
    """
    ids = tokenizer.encode(render_prompt(tokenizer, request), add_special_tokens=request.messages is None)
    return [int(i) for i in ids]
