"""LLM-as-judge verifiers: any LangChain chat model, or any of our policy engines, grading solutions.

In: :class:`~langchain_ttc.core.judging.JudgeQuery` objects (:class:`LLMJudge`) or, through the PRM
interface, :class:`~langchain_ttc.core.types.ScoreRequest` objects (:class:`JudgePRM`). Out: one
:class:`~langchain_ttc.core.judging.JudgeVerdict` per query, or one score per step. One ``invoke`` is
one batched call on the model: a chat model's ``batch``/``abatch`` (under ``max_concurrency``), one
policy call, or one gathered set of server requests.

**How a score is read** (``method``):

- ``"logprobs"``: the judge is asked for one word (``Yes``/``No``; ``A``/``B`` for a pairwise
  question) and writes one token; the score is P(yes) / (P(yes) + P(no)) from that token's top
  log-probabilities. Available on an :class:`~langchain_ttc.engines.openai_policy.OpenAICompatiblePolicy`
  (a 1-token greedy request to the server's ``/v1/completions`` with ``logprobs``, the prompt rendered
  as the policy renders it) and on chat models that take ``logprobs``/``top_logprobs``
  (``ChatOpenAI`` and its kin, also against a vLLM server). Our in-process policies
  (transformers, vLLM) return no log-probabilities (``Completion`` carries text, tokens and a finish
  reason), so they judge by ``"structured"``.
- ``"structured"``: the judge fills a small object (a 0-10 ``score`` and a short ``reason``), through
  the chat model's ``with_structured_output``, or, for a policy engine or a chat model without
  structured output, as JSON asked for in the prompt and read leniently from the reply.
- ``"auto"`` (the default): ``"logprobs"`` where the model exposes them (the server policy; a chat
  model with a ``logprobs`` field), else ``"structured"``. A chat model that refuses ``logprobs`` or
  ``max_tokens=1`` (OpenAI's reasoning models) needs ``method="structured"``.

**When a reply cannot be read.** A log-probability reply without either option among its top
tokens is asked again as a structured object, in one more batched call for all such queries
(``escalated`` on the verdict). What still cannot be read gives a verdict without a value, and the
caller's *stated* fallback takes over, counted: :class:`JudgePRM` scores it ``fallback_score``
(0.0 by default: an unverified solution is never preferred to one the judge passed) or raises with
``on_unreadable="raise"``; universal self-consistency falls back to the majority vote and a
tournament counts the match as a tie. Every fallback is logged (logger ``langchain_ttc.judge``),
counted in :attr:`LLMJudge.stats` / :attr:`JudgePRM.stats`, and, in strategies that call the judge
themselves, in ``usage.judge_fallbacks``.

**Outcome and process modes** (:class:`JudgePRM`). ``mode="outcome"`` asks one question per
solution ("is this answer correct and complete?") and reports its score as the *last* step's score;
the steps before it get 1.0 (no objection). So the aggregations ``last``, ``min`` and ``prod`` all
give the judge's score, ``mean`` gives 1 - (1 - s) / k for k steps (use ``last``, the default; a
self-refinement critic flags the last step). ``mode="process"`` asks about every step given the
steps before it, all steps of all solutions in one batched call; answers are cached
(``cache_size``) so a search that re-scores the same prefixes does not pay twice.

**Usage and traces.** Each call is traced as its own chain run named ``ttc:judge:<task>`` (inside
``ttc:prm`` for a :class:`JudgePRM`), whose outputs hold the verdicts, the token usage and the count
of unreadable replies; the chat model's own runs nest under it, so LangSmith and
``get_usage_metadata_callback`` see the judge's tokens per model. A :class:`JudgePRM`'s tokens are the
PRM's tokens (``usage.prm_tokens``); strategies that call an :class:`LLMJudge` count
``judge_calls``/``judge_tokens``. :attr:`LLMJudge.usage_by_model` tallies tokens per model name.

Example:
    >>> from langchain_openai import ChatOpenAI  # doctest: +SKIP
    >>> prm = JudgePRM(ChatOpenAI(model="gpt-4o-mini", temperature=0))  # doctest: +SKIP
    >>> graph = create_best_of_n_graph(ChatModelPolicy(ChatOpenAI(model="gpt-4o-mini")), prm, n=8)  # doctest: +SKIP
    >>> server = OpenAICompatiblePolicy("http://127.0.0.1:8000", model="Qwen/Qwen2.5-1.5B-Instruct")  # doctest: +SKIP
    >>> prm = JudgePRM(server, mode="process")  # P(yes) per step from the server's log-probabilities  # doctest: +SKIP

"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config
from pydantic import BaseModel

from langchain_ttc.core.judging import (
    SCHEMAS,
    JudgePrompts,
    JudgeQuery,
    JudgeVerdict,
    logprob_verdict,
    outcome_query,
    process_query,
    read_structured_verdict,
    read_text_verdict,
)
from langchain_ttc.core.types import GenerationRequest, Message, ScoreRequest, StepScores
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.engines.chat_model_policy import ChatModelPolicy, TokenTally
from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy, routing_key
from langchain_ttc.engines.server_client import gather_all

__all__ = ["JudgeMethod", "JudgeModel", "JudgePRM", "JudgeStats", "LLMJudge", "as_judge", "selection_judge"]

logger = logging.getLogger("langchain_ttc.judge")

JudgeMethod = Literal["auto", "logprobs", "structured"]
"""How the judge's score is read: first-token log-probabilities, a structured object, or the best available."""

JudgeModel = BaseChatModel | PolicyEngine
"""What can judge: any LangChain chat model, or any policy engine (a ``ChatModelPolicy`` judges with its model)."""

Backend = Literal["chat", "server", "policy"]


@dataclass
class JudgeStats:
    """Running totals of a judge (or a judge PRM) since it was built.

    Attributes:
        calls: Batched calls made (an escalation is one more).
        queries: Questions asked (cached answers not included).
        cached: Questions answered from the cache (:class:`JudgePRM` in process mode).
        input_tokens: Tokens the judge read.
        output_tokens: Tokens it wrote.
        unreadable: Replies that could not be read.
        fallbacks: Unreadable replies a fallback score stood in for (:class:`JudgePRM`).
        methods: Verdicts by how they were read (``logprobs``, ``structured``, ``text``).

    """

    calls: int = 0
    queries: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    unreadable: int = 0
    fallbacks: int = 0
    methods: Counter[str] = field(default_factory=Counter)


class _Stats:
    """A :class:`JudgeStats` updated under a lock (judges are shared by concurrent runs)."""

    def __init__(self) -> None:
        self._stats = JudgeStats()
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self._stats, name, getattr(self._stats, name) + value)

    def add_verdicts(self, verdicts: Sequence[JudgeVerdict], *, calls: int) -> None:
        with self._lock:
            self._stats.calls += calls
            self._stats.queries += len(verdicts)
            self._stats.input_tokens += sum(v.input_tokens for v in verdicts)
            self._stats.output_tokens += sum(v.output_tokens for v in verdicts)
            self._stats.unreadable += sum(not v.readable for v in verdicts)
            self._stats.methods.update(v.method for v in verdicts if v.method is not None)

    def snapshot(self) -> JudgeStats:
        with self._lock:
            return replace(self._stats, methods=Counter(self._stats.methods))


def _backend(model: object) -> tuple[Backend, Any]:
    if isinstance(model, ChatModelPolicy):
        return "chat", model.model
    if isinstance(model, BaseChatModel):
        return "chat", model
    if isinstance(model, OpenAICompatiblePolicy):
        return "server", model
    if isinstance(model, PolicyEngine):
        return "policy", model
    raise TypeError(
        f"judge={type(model).__name__} is neither a LangChain chat model nor a PolicyEngine; pass for example "
        "ChatOpenAI(model=...) or OpenAICompatiblePolicy(url, model=...)."
    )


def _exposes_logprobs(backend: Backend, model: Any) -> bool:
    if backend == "server":
        return True
    fields = getattr(type(model), "model_fields", {})
    return backend == "chat" and "logprobs" in fields and "top_logprobs" in fields


def _usage(message: Any) -> tuple[int, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))


def _message_text(message: Any) -> str:
    return message.text if isinstance(message, BaseMessage) else str(message)


def _top_logprobs(message: Any) -> dict[str, float] | None:
    """The first generated token's top log-probabilities in a chat reply (OpenAI format), or ``None``."""
    logprobs = (getattr(message, "response_metadata", None) or {}).get("logprobs") or {}
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content:
        return None
    first = content[0]
    top = {str(t["token"]): float(t["logprob"]) for t in first.get("top_logprobs") or [] if "token" in t}
    if "token" in first and first.get("logprob") is not None:
        top.setdefault(str(first["token"]), float(first["logprob"]))
    return top or None


def _server_top_logprobs(payload: dict[str, Any]) -> dict[str, float] | None:
    """The first token's top log-probabilities in a ``/v1/completions`` reply, or ``None``."""
    choices = payload.get("choices") or []
    logprobs = (choices[0].get("logprobs") or {}) if choices else {}
    top = logprobs.get("top_logprobs") or []
    first = top[0] if top else None
    return {str(k): float(v) for k, v in first.items() if v is not None} if first else None


class LLMJudge(Runnable[Sequence[JudgeQuery | dict[str, Any]], list[JudgeVerdict]]):
    """A chat model or a policy engine as a judge: one batched call answers many judge questions.

    Args:
        model: Any LangChain chat model, or a policy engine (an ``OpenAICompatiblePolicy`` judges by
            log-probabilities through its server; a ``ChatModelPolicy`` judges with its chat model;
            other policies by structured text).
        method: ``"auto"``, ``"logprobs"`` or ``"structured"`` (see the module docs).
        prompts: The rubric (:class:`~langchain_ttc.core.judging.JudgePrompts`); the defaults ask
            "is this answer correct and complete?" and "is this step correct?".
        max_tokens: Most tokens a structured or text reply may take (a policy engine's judge
            replies; a chat model's own limit applies to its structured output).
        top_logprobs: Top log-probabilities asked for (20 is the most OpenAI and vLLM give by default).
        max_concurrency: Most chat-model calls in flight in one batch.
        structured_method: ``method=`` for the chat model's ``with_structured_output``
            (``"json_schema"``, ``"function_calling"``, ...); ``None``: the model's default.

    Raises:
        TypeError: If ``model`` is neither a chat model nor a policy engine.
        ValueError: If ``method="logprobs"`` and the model exposes no log-probabilities, or an
            option is out of range.

    Example:
        >>> from tests.fakes import ScriptedChatModel  # doctest: +SKIP
        >>> judge = LLMJudge(ScriptedChatModel(replies=['{"score": 8, "reason": "fine"}']))  # doctest: +SKIP
        >>> judge.invoke([outcome_query(judge.prompts, "2+2?", "4")])[0].score  # doctest: +SKIP
        0.8

    """

    name: str | None = "ttc:judge"

    def __init__(
        self,
        model: JudgeModel,
        *,
        method: JudgeMethod = "auto",
        prompts: JudgePrompts | None = None,
        max_tokens: int = 256,
        top_logprobs: int = 20,
        max_concurrency: int = 8,
        structured_method: str | None = None,
    ) -> None:
        self.backend, self.model = _backend(model)
        if method not in ("auto", "logprobs", "structured"):
            raise ValueError(f"method={method!r} is not known; pass 'auto', 'logprobs' or 'structured'.")
        exposes = _exposes_logprobs(self.backend, self.model)
        if method == "logprobs" and not exposes:
            raise ValueError(
                f"method='logprobs' needs a judge that returns log-probabilities; {type(self.model).__name__} does "
                "not (our in-process policies return none). Pass method='structured', an OpenAICompatiblePolicy on "
                "a vLLM server, or a chat model with logprobs (ChatOpenAI)."
            )
        for option, value in (("max_tokens", max_tokens), ("top_logprobs", top_logprobs)):
            if value < 1:
                raise ValueError(f"{option}={value} must be at least 1.")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency={max_concurrency} must be at least 1.")
        self.method: Literal["logprobs", "structured"] = (
            "logprobs" if method == "logprobs" or (method == "auto" and exposes) else "structured"
        )
        self.prompts = prompts or JudgePrompts()
        self.max_tokens = max_tokens
        self.top_logprobs = top_logprobs
        self.max_concurrency = max_concurrency
        self.structured_method = structured_method
        self.model_name = _model_name(self.backend, self.model)
        self._structured: dict[str, Runnable[Any, Any] | None] = {}
        self._stats = _Stats()
        self._tally = TokenTally()

    # ---- what it reports ----

    @property
    def stats(self) -> JudgeStats:
        """Running totals since the judge was built (a copy)."""
        return self._stats.snapshot()

    @property
    def usage_by_model(self) -> dict[str, dict[str, int]]:
        """Tokens the judge spent, per model name: ``{"input_tokens", "output_tokens", "total_tokens", "requests"}``."""
        return self._tally.snapshot()

    def reads_logprobs(self, task: str) -> bool:
        """Whether a question of ``task`` is read from log-probabilities (consistency questions never are)."""
        return self.method == "logprobs" and task != "consistency"

    # ---- the Runnable interface ----

    def invoke(
        self, input: Sequence[JudgeQuery | dict[str, Any]], config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[JudgeVerdict]:
        """Answer every query in one batched call (two when unreadable log-probability replies are asked again)."""
        _no_options(self, kwargs)
        queries = _queries(input)
        if not queries:
            return []
        traced = _untyped(self)._call_with_config(
            lambda qs: self._trace(self._answer(qs)), queries, self._config(config, queries), run_type="chain"
        )
        return list(traced["verdicts"])

    async def ainvoke(
        self, input: Sequence[JudgeQuery | dict[str, Any]], config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[JudgeVerdict]:
        """Answer every query in one batched call on the model's async API (see :meth:`invoke`)."""
        _no_options(self, kwargs)
        queries = _queries(input)
        if not queries:
            return []

        async def run(qs: list[JudgeQuery]) -> dict[str, Any]:
            return self._trace(await self._aanswer(qs))

        traced = await _untyped(self)._acall_with_config(run, queries, self._config(config, queries), run_type="chain")
        return list(traced["verdicts"])

    def _config(self, config: RunnableConfig | None, queries: list[JudgeQuery]) -> RunnableConfig:
        config = ensure_config(config)
        tasks = sorted({q.task for q in queries})
        name = f"ttc:judge:{'+'.join(tasks)}"
        config["run_name"] = config.get("run_name") or name
        config["tags"] = [*config.get("tags", []), "ttc:judge"]
        config["metadata"] = {
            **config.get("metadata", {}),
            "ls_model_name": self.model_name,
            "ttc_judge_method": self.method,
        }
        return config

    def _trace(self, answered: tuple[list[JudgeVerdict], int]) -> dict[str, Any]:
        verdicts, calls = answered
        self._stats.add_verdicts(verdicts, calls=calls)
        unreadable = sum(not v.readable for v in verdicts)
        if unreadable:
            logger.warning("%d of %d judge replies could not be read (%s)", unreadable, len(verdicts), self.model_name)
        usage = {
            "input_tokens": sum(v.input_tokens for v in verdicts),
            "output_tokens": sum(v.output_tokens for v in verdicts),
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        return {"verdicts": verdicts, "calls": calls, "unreadable": unreadable, "usage_metadata": usage}

    # ---- answering: first reading, then escalation of unreadable log-probability replies ----

    def _plan(self, queries: list[JudgeQuery]) -> tuple[list[int], list[int]]:
        by_logprobs = [i for i, q in enumerate(queries) if self.reads_logprobs(q.task)]
        structured = [i for i, q in enumerate(queries) if not self.reads_logprobs(q.task)]
        return by_logprobs, structured

    def _answer(self, queries: list[JudgeQuery]) -> tuple[list[JudgeVerdict], int]:
        by_logprobs, structured = self._plan(queries)
        verdicts: list[JudgeVerdict | None] = [None] * len(queries)
        calls = 0
        if by_logprobs:
            calls += 1
            for i, v in zip(by_logprobs, self._logprobs([queries[i] for i in by_logprobs]), strict=True):
                verdicts[i] = v
        retry = [i for i in by_logprobs if not _readable(verdicts[i])]
        ask = structured + retry
        if ask:
            calls += 1
            for i, v in zip(ask, self._structured_answers([queries[i] for i in ask]), strict=True):
                verdicts[i] = _escalated(verdicts[i], v) if i in retry else v
        return [v for v in verdicts if v is not None], calls

    async def _aanswer(self, queries: list[JudgeQuery]) -> tuple[list[JudgeVerdict], int]:
        by_logprobs, structured = self._plan(queries)
        verdicts: list[JudgeVerdict | None] = [None] * len(queries)
        calls = 0
        if by_logprobs:
            calls += 1
            answers = await self._alogprobs([queries[i] for i in by_logprobs])
            for i, v in zip(by_logprobs, answers, strict=True):
                verdicts[i] = v
        retry = [i for i in by_logprobs if not _readable(verdicts[i])]
        ask = structured + retry
        if ask:
            calls += 1
            answers = await self._astructured_answers([queries[i] for i in ask])
            for i, v in zip(ask, answers, strict=True):
                verdicts[i] = _escalated(verdicts[i], v) if i in retry else v
        return [v for v in verdicts if v is not None], calls

    def _messages(self, query: JudgeQuery, method: Literal["logprobs", "structured"]) -> list[Message]:
        return self.prompts.messages(query, method)

    # ---- log-probabilities ----

    def _chat_logprob_runnable(self) -> Runnable[Any, Any]:
        return self.model.bind(logprobs=True, top_logprobs=self.top_logprobs, max_tokens=1)

    def _logprobs(self, queries: list[JudgeQuery]) -> list[JudgeVerdict]:
        if self.backend == "server":
            return self.model.client.run(self._aserver_logprobs(queries))
        inputs = [convert_to_messages(self._messages(q, "logprobs")) for q in queries]
        replies = self._chat_logprob_runnable().batch(inputs, config={"max_concurrency": self.max_concurrency})
        return [self._chat_logprob_verdict(q, r) for q, r in zip(queries, replies, strict=True)]

    async def _alogprobs(self, queries: list[JudgeQuery]) -> list[JudgeVerdict]:
        if self.backend == "server":
            return await self._aserver_logprobs(queries)
        inputs = [convert_to_messages(self._messages(q, "logprobs")) for q in queries]
        replies = await self._chat_logprob_runnable().abatch(inputs, config={"max_concurrency": self.max_concurrency})
        return [self._chat_logprob_verdict(q, r) for q, r in zip(queries, replies, strict=True)]

    def _chat_logprob_verdict(self, query: JudgeQuery, reply: Any) -> JudgeVerdict:
        read, written = _usage(reply)
        self._tally.add(_reply_model(reply, self.model_name), read, written)
        verdict = logprob_verdict(query, _top_logprobs(reply))
        return verdict.model_copy(update={"input_tokens": read, "output_tokens": written})

    async def _aserver_logprobs(self, queries: list[JudgeQuery]) -> list[JudgeVerdict]:
        policy: OpenAICompatiblePolicy = self.model

        async def one(query: JudgeQuery) -> JudgeVerdict:
            request = GenerationRequest(messages=self._messages(query, "logprobs"), max_tokens=1, temperature=0.0)
            body = {
                "model": policy.model,
                "prompt": policy.prompt(request),
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": self.top_logprobs,
            }
            payload = await policy.client.apost("/v1/completions", body, key=routing_key(request))
            usage = payload.get("usage") or {}
            read, written = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
            self._tally.add(policy.model, read, written)
            verdict = logprob_verdict(query, _server_top_logprobs(payload))
            return verdict.model_copy(update={"input_tokens": read, "output_tokens": written})

        return await gather_all([one(q) for q in queries])

    # ---- structured objects (or JSON in text) ----

    def _structured_runnable(self, task: str) -> Runnable[Any, Any] | None:
        """The chat model's structured output for ``task``'s schema, or ``None`` when the model has none."""
        if task not in self._structured:
            options = {"method": self.structured_method} if self.structured_method else {}
            try:
                self._structured[task] = self.model.with_structured_output(
                    SCHEMAS[task],  # type: ignore[index]
                    include_raw=True,
                    **options,
                )
            except NotImplementedError:
                self._structured[task] = None
        return self._structured[task]

    def _generation_requests(self, queries: list[JudgeQuery]) -> list[GenerationRequest]:
        return [
            GenerationRequest(messages=self._messages(q, "structured"), max_tokens=self.max_tokens, temperature=0.0)
            for q in queries
        ]

    def _structured_answers(self, queries: list[JudgeQuery]) -> list[JudgeVerdict]:
        if self.backend != "chat":
            results = self.model.invoke(self._generation_requests(queries))
            return [self._policy_verdict(q, r) for q, r in zip(queries, results, strict=True)]
        runnable = self._structured_runnable(queries[0].task)
        same_task = all(q.task == queries[0].task for q in queries)
        if not same_task:  # one batch per task (a batch usually holds one)
            return _merge(
                queries, {t: self._structured_answers([q for q in queries if q.task == t]) for t in _tasks(queries)}
            )
        inputs = [convert_to_messages(self._messages(q, "structured")) for q in queries]
        config: RunnableConfig = {"max_concurrency": self.max_concurrency}
        replies = (runnable or self.model).batch(inputs, config=config)
        return [self._chat_structured_verdict(q, r) for q, r in zip(queries, replies, strict=True)]

    async def _astructured_answers(self, queries: list[JudgeQuery]) -> list[JudgeVerdict]:
        if self.backend != "chat":
            results = await self.model.ainvoke(self._generation_requests(queries))
            return [self._policy_verdict(q, r) for q, r in zip(queries, results, strict=True)]
        if not all(q.task == queries[0].task for q in queries):
            answered = {
                t: await self._astructured_answers([q for q in queries if q.task == t]) for t in _tasks(queries)
            }
            return _merge(queries, answered)
        runnable = self._structured_runnable(queries[0].task)
        inputs = [convert_to_messages(self._messages(q, "structured")) for q in queries]
        replies = await (runnable or self.model).abatch(inputs, config={"max_concurrency": self.max_concurrency})
        return [self._chat_structured_verdict(q, r) for q, r in zip(queries, replies, strict=True)]

    def _policy_verdict(self, query: JudgeQuery, result: Any) -> JudgeVerdict:
        completion = result.completions[0]
        self._tally.add(self.model_name, result.prompt_tokens, completion.num_tokens)
        verdict = read_text_verdict(query, completion.text)
        return verdict.model_copy(update={"input_tokens": result.prompt_tokens, "output_tokens": completion.num_tokens})

    def _chat_structured_verdict(self, query: JudgeQuery, reply: Any) -> JudgeVerdict:
        if isinstance(reply, dict) and "raw" in reply:  # with_structured_output(include_raw=True)
            raw, parsed = reply.get("raw"), reply.get("parsed")
        else:  # a model without structured output: its text
            raw, parsed = reply, None
        read, written = _usage(raw)
        self._tally.add(_reply_model(raw, self.model_name), read, written)
        verdict = read_structured_verdict(query, parsed if isinstance(parsed, (BaseModel, dict)) else None)
        if verdict is None:  # the parse failed: the tool call's arguments, then the reply's text
            calls = getattr(raw, "tool_calls", None) or []
            verdict = read_structured_verdict(query, calls[0].get("args")) if calls else None
            if verdict is None:
                verdict = read_text_verdict(query, _message_text(raw) if raw is not None else "")
        elif raw is not None:
            verdict = verdict.model_copy(update={"reply": _message_text(raw)[:500]})
        return verdict.model_copy(update={"input_tokens": read, "output_tokens": written})


def _untyped(runnable: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """The judge typed loosely: its traced call returns the trace (verdicts and usage), not just the verdicts."""
    return runnable


def _model_name(backend: Backend, model: Any) -> str:
    if backend == "chat":
        return str(getattr(model, "model_name", None) or getattr(model, "model", None) or model._llm_type)
    return str(getattr(model, "model_name", None) or type(model).__name__)


def _reply_model(reply: Any, default: str) -> str:
    metadata = getattr(reply, "response_metadata", None) or {}
    return str(metadata.get("model_name") or default)


def _readable(verdict: JudgeVerdict | None) -> bool:
    return verdict is not None and verdict.readable


def _escalated(first: JudgeVerdict | None, second: JudgeVerdict) -> JudgeVerdict:
    """The second reading of a query whose first could not be read: its tokens include the first's."""
    read = second.input_tokens + (first.input_tokens if first else 0)
    written = second.output_tokens + (first.output_tokens if first else 0)
    reply = second.reply or (first.reply if first else "")
    return second.model_copy(update={"input_tokens": read, "output_tokens": written, "escalated": True, "reply": reply})


def _tasks(queries: list[JudgeQuery]) -> list[str]:
    return list(dict.fromkeys(q.task for q in queries))


def _merge(queries: list[JudgeQuery], answered: dict[str, list[JudgeVerdict]]) -> list[JudgeVerdict]:
    """Verdicts answered per task, put back in the order of ``queries``."""
    taken = dict.fromkeys(answered, 0)
    merged = []
    for q in queries:
        merged.append(answered[q.task][taken[q.task]])
        taken[q.task] += 1
    return merged


def _queries(input: Sequence[JudgeQuery | dict[str, Any]]) -> list[JudgeQuery]:
    return [q if isinstance(q, JudgeQuery) else JudgeQuery.model_validate(q) for q in input]


def _no_options(judge: Runnable[Any, Any], kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(
            f"{type(judge).__name__}.invoke() got unexpected keyword arguments {', '.join(map(repr, sorted(kwargs)))}: "
            "a judge call takes its queries and config= only; set the judge's options when you build it."
        )


def as_judge(model: LLMJudge | JudgeModel, **options: Any) -> LLMJudge:
    """``model`` as an :class:`LLMJudge` (a judge is returned as it is; ``options`` build a new one).

    Raises:
        TypeError: If ``model`` cannot judge, or options are given with a judge already built.

    """
    if isinstance(model, LLMJudge):
        if options:
            raise TypeError(
                f"{', '.join(sorted(options))} cannot be set on a judge already built; pass them to LLMJudge(...)."
            )
        return model
    return LLMJudge(model, **options)


def selection_judge(
    policy: PolicyEngine, prm: PRMEngine | None = None, judge: LLMJudge | JudgeModel | None = None
) -> LLMJudge:
    """The judge a selection strategy asks: ``judge``, else a :class:`JudgePRM`'s judge (``prm``), else the policy.

    The policy as its own judge is universal self-consistency's setting: the model that wrote the
    samples reads them.

    Raises:
        TypeError: If ``judge`` cannot judge.

    """
    if judge is not None:
        return as_judge(judge)
    if isinstance(prm, JudgePRM):
        return prm.judge
    return LLMJudge(policy)


class JudgePRM(PRMEngine):
    """An LLM judge as a process reward model: usable wherever a PRM is.

    Best-of-N, weighted best-of-N, beam search, DVTS, particle filtering, the router's pilots and the
    self-refinement critic all take it as ``prm``. See the module docs for the two modes, how scores
    are read and what happens when a reply cannot be read.

    Args:
        judge: Any LangChain chat model, a policy engine, or an :class:`LLMJudge` (then ``method``,
            ``prompts``, ``max_tokens`` and ``max_concurrency`` are the judge's).
        mode: ``"outcome"`` (one question per solution, its score the last step's; earlier steps 1.0)
            or ``"process"`` (one question per step, given the steps before it).
        method: ``"auto"``, ``"logprobs"`` or ``"structured"``.
        prompts: The rubric (:class:`~langchain_ttc.core.judging.JudgePrompts`).
        fallback_score: The score of a solution (or step) whose judgment could not be read, in [0, 1].
        on_unreadable: ``"fallback"`` (score it ``fallback_score``, count and log it) or ``"raise"``.
        cache_size: Judgments kept for reuse (a search re-scores the same prefixes); 0: none.
        max_tokens: Most tokens of a structured or text reply.
        max_concurrency: Most chat-model calls in flight in one batch.

    Raises:
        TypeError: If ``judge`` cannot judge.
        ValueError: If an option is out of range.

    Example:
        >>> prm = JudgePRM(ChatOpenAI(model="gpt-4o-mini", temperature=0), mode="process")  # doctest: +SKIP
        >>> prm.invoke([{"problem": "2+3*4?", "steps": ["3*4=12", "2+12=14"]}])[0].scores  # doctest: +SKIP
        [0.98, 0.97]

    """

    def __init__(
        self,
        judge: LLMJudge | JudgeModel,
        *,
        mode: Literal["outcome", "process"] = "outcome",
        method: JudgeMethod = "auto",
        prompts: JudgePrompts | None = None,
        fallback_score: float = 0.0,
        on_unreadable: Literal["fallback", "raise"] = "fallback",
        cache_size: int = 4096,
        max_tokens: int = 256,
        max_concurrency: int = 8,
    ) -> None:
        if isinstance(judge, LLMJudge):
            given = {"method": method != "auto", "prompts": prompts is not None}
            given |= {"max_tokens": max_tokens != 256, "max_concurrency": max_concurrency != 8}
            if any(given.values()):
                raise TypeError(
                    f"{', '.join(k for k, v in given.items() if v)} cannot be set with a judge already built; "
                    "pass them to LLMJudge(...)."
                )
            self.judge = judge
        else:
            self.judge = LLMJudge(
                judge, method=method, prompts=prompts, max_tokens=max_tokens, max_concurrency=max_concurrency
            )
        if mode not in ("outcome", "process"):
            raise ValueError(f"mode={mode!r} is not known; pass 'outcome' or 'process'.")
        if not 0.0 <= fallback_score <= 1.0:
            raise ValueError(f"fallback_score={fallback_score} is outside [0, 1]; pass a score in [0, 1], e.g. 0.0.")
        if on_unreadable not in ("fallback", "raise"):
            raise ValueError(f"on_unreadable={on_unreadable!r} is not known; pass 'fallback' or 'raise'.")
        if cache_size < 0:
            raise ValueError(f"cache_size={cache_size} must be >= 0 (0: no cache).")
        self.mode = mode
        self.fallback_score = fallback_score
        self.on_unreadable = on_unreadable
        self.cache_size = cache_size
        self.model_name = self.judge.model_name
        self.provider = "llm-judge"
        self._cache: OrderedDict[tuple[str, ...], JudgeVerdict] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._stats = _Stats()

    @property
    def stats(self) -> JudgeStats:
        """Running totals of this PRM (cached answers and fallbacks included; a copy)."""
        return self._stats.snapshot()

    # ---- the questions of a batch and the cache ----

    def _questions(self, requests: list[ScoreRequest]) -> list[list[tuple[tuple[str, ...], JudgeQuery]]]:
        """Per request, its questions with their cache keys (outcome: one; process: one per step)."""
        prompts = self.judge.prompts
        asked: list[list[tuple[tuple[str, ...], JudgeQuery]]] = []
        for request in requests:
            if not request.steps:
                asked.append([])
            elif self.mode == "outcome":
                solution = "\n\n".join(request.steps)
                asked.append(
                    [(("outcome", request.problem, solution), outcome_query(prompts, request.problem, solution))]
                )
            else:
                asked.append(
                    [
                        (
                            ("process", request.problem, *request.steps[: k + 1]),
                            process_query(prompts, request.problem, request.steps, k),
                        )
                        for k in range(len(request.steps))
                    ]
                )
        return asked

    def _cached(self, key: tuple[str, ...]) -> JudgeVerdict | None:
        with self._cache_lock:
            verdict = self._cache.get(key)
            if verdict is not None:
                self._cache.move_to_end(key)
            return verdict

    def _remember(self, key: tuple[str, ...], verdict: JudgeVerdict) -> None:
        if not self.cache_size or not verdict.readable:  # an unreadable reply may read next time
            return
        with self._cache_lock:
            self._cache[key] = verdict.model_copy(update={"input_tokens": 0, "output_tokens": 0})
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _todo(
        self, asked: list[list[tuple[tuple[str, ...], JudgeQuery]]]
    ) -> tuple[dict[tuple[str, ...], JudgeVerdict], list[tuple[tuple[str, ...], JudgeQuery]]]:
        known: dict[tuple[str, ...], JudgeVerdict] = {}
        todo: dict[tuple[str, ...], JudgeQuery] = {}
        for questions in asked:
            for key, query in questions:
                if key in known or key in todo:
                    continue
                hit = self._cached(key) if self.cache_size else None
                if hit is not None:
                    known[key] = hit
                else:
                    todo[key] = query
        self._stats.add(cached=len(known))
        return known, list(todo.items())

    def _scores(
        self,
        requests: list[ScoreRequest],
        asked: list[list[tuple[tuple[str, ...], JudgeQuery]]],
        known: dict[tuple[str, ...], JudgeVerdict],
    ) -> list[StepScores]:
        results = []
        fallbacks = 0
        for request, questions in zip(requests, asked, strict=True):
            scores, tokens = [], 0
            for key, _ in questions:
                verdict = known[key]
                tokens += verdict.tokens
                if verdict.score is None:
                    if self.on_unreadable == "raise":
                        raise ValueError(
                            f"the judge's reply could not be read as a score ({verdict.reply[:200]!r}); pass "
                            "on_unreadable='fallback' to score such replies fallback_score, or fix the rubric."
                        )
                    fallbacks += 1
                    scores.append(self.fallback_score)
                else:
                    scores.append(verdict.score)
                known[key] = verdict.model_copy(update={"input_tokens": 0, "output_tokens": 0})  # counted once
            if self.mode == "outcome" and scores:
                scores = [1.0] * (len(request.steps) - 1) + scores
            results.append(StepScores(scores=scores, num_tokens=tokens))
        if fallbacks:
            self._stats.add(fallbacks=fallbacks)
            logger.warning(
                "JudgePRM: %d judgment(s) could not be read and were scored fallback_score=%s",
                fallbacks,
                self.fallback_score,
            )
        return results

    def _record(
        self,
        todo: list[tuple[tuple[str, ...], JudgeQuery]],
        verdicts: list[JudgeVerdict],
        known: dict[tuple[str, ...], JudgeVerdict],
    ) -> None:
        self._stats.add_verdicts(verdicts, calls=(1 + any(v.escalated for v in verdicts)) if verdicts else 0)
        for (key, _), verdict in zip(todo, verdicts, strict=True):
            known[key] = verdict
            self._remember(key, verdict)

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        asked = self._questions(requests)
        known, todo = self._todo(asked)
        verdicts = self.judge.invoke([q for _, q in todo]) if todo else []
        self._record(todo, verdicts, known)
        return self._scores(requests, asked, known)

    async def _ascore(self, requests: list[ScoreRequest]) -> list[StepScores]:
        asked = self._questions(requests)
        known, todo = self._todo(asked)
        verdicts = await self.judge.ainvoke([q for _, q in todo]) if todo else []
        self._record(todo, verdicts, known)
        return self._scores(requests, asked, known)
