"""Any LangChain chat model as a policy, for the whole-solution strategies.

In: :class:`~langchain_ttc.core.types.GenerationRequest` objects with ``messages``. Out: ``n``
completions per request, from ``n`` parallel calls of the model (at most ``max_concurrency`` at a
time), with the finish reason and token counts the model reports. A chat model cannot continue a
partial assistant message, so step-level search refuses this policy at graph construction.

Example:
    >>> policy = ChatModelPolicy(ChatOpenAI(model="gpt-4o-mini", temperature=0.8))  # doctest: +SKIP
    >>> graph = create_majority_vote_graph(policy, n=8)  # doctest: +SKIP

"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult
from langchain_ttc.engines.base import PolicyEngine

_LENGTH_REASONS = frozenset({"length", "max_tokens", "MAX_TOKENS"})


class ChatModelPolicy(PolicyEngine):
    """A chat model behind the policy interface (sampling settings are the model's own).

    Args:
        model: Any LangChain chat model.
        max_concurrency: Most model calls in flight at once.

    Raises:
        TypeError: If ``model`` is not a chat model.

    """

    supports_partial = False

    def __init__(self, model: BaseChatModel, *, max_concurrency: int = 8) -> None:
        if not isinstance(model, BaseChatModel):
            raise TypeError(f"model={type(model).__name__} is not a LangChain BaseChatModel.")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency={max_concurrency} must be at least 1.")
        self.model = model
        self.max_concurrency = max_concurrency

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        calls: list[list[tuple[str, str]]] = []
        owners: list[int] = []
        for index, request in enumerate(requests):
            if request.partial or request.messages is None:
                raise ValueError(
                    "ChatModelPolicy takes chat requests without partial= (a chat model cannot continue a partial "
                    "assistant message); use a transformers or vLLM policy for step-level search."
                )
            messages = [(m["role"], m["content"]) for m in request.messages]
            calls += [messages] * request.n
            owners += [index] * request.n
        replies = self.model.batch(calls, {"max_concurrency": self.max_concurrency})  # type: ignore[arg-type]
        completions: list[list[Completion]] = [[] for _ in requests]
        prompt_tokens = [0] * len(requests)
        for owner, reply in zip(owners, replies, strict=True):
            completions[owner].append(self._completion(reply))
            usage = getattr(reply, "usage_metadata", None) or {}
            prompt_tokens[owner] = usage.get("input_tokens", 0)
        return [
            GenerationResult(completions=c, prompt_tokens=p) for c, p in zip(completions, prompt_tokens, strict=True)
        ]

    @staticmethod
    def _completion(reply: Any) -> Completion:
        text = reply.text if isinstance(reply, AIMessage) else str(reply)
        reason = (getattr(reply, "response_metadata", None) or {}).get("finish_reason") or (
            getattr(reply, "response_metadata", None) or {}
        ).get("stop_reason")
        usage = getattr(reply, "usage_metadata", None) or {}
        return Completion(
            text=text,
            num_tokens=usage.get("output_tokens", 0),
            finish_reason="length" if reason in _LENGTH_REASONS else "eos",
        )
