"""The OpenAI chat-completions wire format that ``ttc serve`` speaks, with its documented extensions.

In: a ``POST /v1/chat/completions`` body. Out: a ``chat.completion`` (or ``chat.completion.chunk``
events), ``usage`` counting every token the strategy spent, and errors as
``{"error": {"message", "type", "param", "code"}}``.

Extensions (all optional, ignored by OpenAI clients that do not know them):

- request ``ttc_include_result: true``: the response's ``ttc.result`` holds the whole
  :class:`~langchain_ttc.core.types.TTCResult` (every candidate, its scores, usage).
- request ``ttc_answers: "<name>"``: the answer key this request's votes read answers with
  (``math``, ``reference-math``, ...: the strategies' ``answers`` option; default: the server's
  ``answers`` setting, ``TTC_SERVE_ANSWERS``). An unknown name is 400 with ``param: ttc_answers``.
- response ``ttc``: ``{"strategy", "n", "answer"}`` (plus ``result`` when asked); in a stream, on
  the chunk that carries ``finish_reason``. When there is no answer, ``ttc.no_answer`` says why
  (``{"reason": "length" | "no_answer" | "no_candidates", "message"}``); ``finish_reason`` is
  ``length`` when every candidate was cut off by ``max_tokens``.
- ``usage.prompt_tokens`` counts the policy's prompt tokens plus the tokens the PRM read;
  ``usage.completion_tokens`` the policy's generated tokens; ``usage.ttc`` breaks them down
  (``policy_prompt_tokens``, ``prm_tokens``, ``policy_calls``, ``prm_calls``, ``judge_tokens``,
  ``judge_calls``, ``judge_fallbacks``, ``wall_time_s``).

Example:
    >>> ChatCompletionRequest(model="weighted_best_of_n:4", messages=[{"role": "user", "content": "2+2?"}]).n
    1
    >>> api_error(404, "no such model", param="model", code="model_not_found").body()["error"]["type"]
    'invalid_request_error'

"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from langchain_ttc.core.types import TTCResult, Usage

MAX_MODEL_CHARS = 256
"""The longest model name a request may send (names are ``<strategy>[:<n>]``)."""
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
"""Chat roles a strategy reads, and the role each becomes (``developer`` is OpenAI's newer ``system``)."""


class APIError(Exception):
    """An error returned in OpenAI's format, with its HTTP status.

    Args:
        status: The HTTP status (400 bad request, 401 bad key, 404 unknown model, 413 body too large,
            429 busy, 500, 502, 504 deadline).
        message: What went wrong and how to fix it.
        type: OpenAI's error type (``invalid_request_error``, ``authentication_error``, ``server_error``).
        param: The request field at fault, if any.
        code: A machine-readable code (``model_not_found``, ``invalid_api_key``, ...).
        limit: The server setting that refused the request (``max_body_bytes``, ...), for logs and metrics.
        headers: HTTP headers of the response (``Retry-After`` on a 429).

    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str,
        param: str | None = None,
        code: str | None = None,
        limit: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.limit, self.headers = limit, headers

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


ERROR_TYPES = {401: "authentication_error", 429: "rate_limit_error"}
"""OpenAI's error type by status; any other 4xx is ``invalid_request_error``, any 5xx ``server_error``."""


def api_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    limit: str | None = None,
    headers: dict[str, str] | None = None,
) -> APIError:
    """An :class:`APIError` with the type OpenAI uses for ``status``."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return APIError(status, message, type=kind, param=param, code=code, limit=limit, headers=headers)


def _unicode(text: str) -> str:
    """Refuse text that is not valid Unicode (a lone surrogate from a JSON ``\\ud800`` escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"holds a lone surrogate {text[error.start : error.end]!r} at character {error.start}, which is not "
            "Unicode text; send the character itself, or a valid surrogate pair"
        ) from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]
"""A string that is valid Unicode (UTF-8 encodable): what tokenizers, logs and responses can carry."""


class TextPart(BaseModel):
    """A text part of a message's content (other kinds of parts are refused)."""

    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    """One message of the conversation. Tool calls and tool results are not supported here."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart]
    name: Text | None = None

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with ``usage`` and no choices."""

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions`` (parameters this server does not use are accepted and ignored).

    ``model`` names the strategy and its budget: ``<strategy>`` or ``<strategy>:<n>``. Sampling
    settings apply to every sample the strategy draws; ``max_tokens`` bounds each solution (each
    step in the step-level searches), not the total.
    """

    model_config = ConfigDict(extra="allow")

    model: Text = Field(min_length=1, max_length=MAX_MODEL_CHARS)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Choices returned: always 1 (the strategy's budget is in model).")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=-(2**63), lt=2**63, description="A 64-bit signed integer.")
    tools: list[Any] | None = None
    ttc_include_result: bool = Field(False, description="Extension: return the whole TTC result in ttc.result.")
    ttc_answers: Text | None = Field(
        None, max_length=MAX_MODEL_CHARS, description="Extension: the answer key of this request's votes, by name."
    )

    def conversation(self) -> list[dict[str, str]]:
        """The messages as the strategy graphs read them.

        Raises:
            APIError: If there is no user message, or the last user message is empty (400, ``messages``).

        """
        turns = [{"role": ROLES[m.role], "content": m.text()} for m in self.messages]
        users = [t for t in turns if t["role"] == "user"]
        if not users or not users[-1]["content"].strip():
            raise api_error(
                400,
                "messages has no user message with text; the last user message is the problem to solve, "
                "e.g. [{'role': 'user', 'content': 'What is 2+3?'}].",
                param="messages",
            )
        return turns


def new_id() -> str:
    """A fresh completion id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def finish_reason(result: TTCResult) -> str:
    """``length`` when the chosen solution, or every candidate when none was chosen, was cut off; else ``stop``."""
    if result.chosen_index is None:
        cut = bool(result.candidates) and all(c.finish_reason == "length" for c in result.candidates)
        return "length" if cut else "stop"
    return "length" if result.candidates[result.chosen_index].finish_reason == "length" else "stop"


def no_answer(result: TTCResult) -> dict[str, str] | None:
    """Why a result has no answer (``ttc.no_answer``: ``reason`` and ``message``), or ``None`` when it has one.

    Example:
        >>> from langchain_ttc.core.types import Candidate
        >>> cut = Candidate(text="2+3 is", steps=["2+3 is"], answer=None, finish_reason="length")
        >>> no_answer(TTCResult(strategy="majority_vote", answer=None, solution=None, chosen_index=None,
        ...                     candidates=[cut, cut]))["reason"]
        'length'

    """
    if result.answer is not None:
        return None
    total = len(result.candidates)
    cut = sum(1 for c in result.candidates if c.finish_reason == "length")
    if total and cut == total:
        return {
            "reason": "length",
            "message": f"every candidate ({cut} of {total}) was cut off by max_tokens before it finished, so no "
            "answer was chosen; send a larger max_tokens (or max_completion_tokens).",
        }
    if not total:
        return {"reason": "no_candidates", "message": "the strategy produced no candidate, so there is no answer."}
    return {
        "reason": "no_answer",
        "message": f"no finished candidate ({total - cut} finished, {cut} cut off by max_tokens) stated a final "
        "answer the strategy could read (e.g. \\boxed{...}); the chosen text, if any, is the best attempt.",
    }


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` for what a strategy spent (PRM and judge tokens count as prompt tokens; ``ttc`` splits it).

    ``prompt_tokens_details.cached_tokens`` is the PRM's tokens taken from its prefix cache (a policy
    server's own prompt cache is not reported to the client, so it is not counted).
    """
    prompt = usage.prompt_tokens + usage.prm_tokens + usage.judge_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": prompt + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.prm_cached_tokens},
        "ttc": {
            "policy_prompt_tokens": usage.prompt_tokens,
            "prm_tokens": usage.prm_tokens,
            "prm_cached_tokens": usage.prm_cached_tokens,
            "policy_calls": usage.policy_calls,
            "prm_calls": usage.prm_calls,
            "judge_tokens": usage.judge_tokens,
            "judge_calls": usage.judge_calls,
            "judge_fallbacks": usage.judge_fallbacks,
            "wall_time_s": usage.wall_time_s,
        },
    }


def ttc_body(result: TTCResult, *, n: int, include_result: bool) -> dict[str, Any]:
    """The ``ttc`` extension of a response."""
    body: dict[str, Any] = {"strategy": result.strategy, "n": n, "answer": result.answer}
    missing = no_answer(result)
    if missing is not None:
        body["no_answer"] = missing
    if include_result:
        body["result"] = result.model_dump(mode="json")
    return body


def completion_body(result: TTCResult, *, model: str, n: int, include_result: bool) -> dict[str, Any]:
    """A whole ``chat.completion`` for a strategy's result: the chosen solution as the assistant's message."""
    return {
        "id": new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.solution or ""},
                "finish_reason": finish_reason(result),
                "logprobs": None,
            }
        ],
        "usage": usage_body(result.usage),
        "ttc": ttc_body(result, n=n, include_result=include_result),
    }


def chunk_body(
    completion_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with one choice."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def split_text(text: str, delimiter: str = "\n\n") -> list[str]:
    """The solution in pieces to stream, one per step (joined, they give the text back).

    Example:
        >>> split_text("a\\n\\nb\\n\\nc")
        ['a\\n\\n', 'b\\n\\n', 'c']

    """
    pieces = text.split(delimiter)
    return [p + delimiter for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
