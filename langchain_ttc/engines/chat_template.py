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
    return encode_text(tokenizer, render_prompt(tokenizer, request), add_special_tokens=request.messages is None)


def encode_text(tokenizer: Any, text: str, *, add_special_tokens: bool) -> list[int]:
    """``tokenizer.encode(text)`` as plain ints, straight from a fast tokenizer's Rust backend when that is the same.

    A Hugging Face fast tokenizer's ``encode`` of one text is its backend's ``encode`` once its
    truncation is off, its padding cannot add a token to one sequence, and its special-token
    splitting is the wrapper's: then the wrapper's Python (a quarter of the call or more) is skipped.
    Any other tokenizer, or a subclass that overrides the encoding, goes through ``tokenizer.encode``.

    Example:
        >>> class Spaces:
        ...     def encode(self, text, add_special_tokens=True):
        ...         return [len(word) for word in text.split()]
        >>> encode_text(Spaces(), "one three", add_special_tokens=False)
        [3, 5]

    """
    backend = _plain_backend(tokenizer)
    if backend is not None:
        return list(backend.encode(text, add_special_tokens=add_special_tokens).ids)
    return [int(i) for i in tokenizer.encode(text, add_special_tokens=add_special_tokens)]


_WRAPPERS = {"encode": "PreTrainedTokenizerBase.encode", "_encode_plus": "TokenizersBackend._encode_plus"}


def _plain_backend(tokenizer: Any) -> Any:
    """The fast tokenizer's backend when encoding through it gives exactly ``tokenizer.encode``'s ids, else ``None``."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or type(backend).__module__.split(".")[0] != "tokenizers":
        return None
    for method, qualname in _WRAPPERS.items():
        if getattr(getattr(type(tokenizer), method, None), "__qualname__", None) != qualname:
            return None  # not the stock wrapper (or another transformers release): let it encode
    padding = backend.padding
    if backend.truncation is not None or (padding is not None and (padding["length"] or padding["pad_to_multiple_of"])):
        return None
    if backend.encode_special_tokens != bool(getattr(tokenizer, "split_special_tokens", False)):
        return None
    return backend
