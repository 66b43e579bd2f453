"""LLM judges (langchain_ttc.engines.judge): outcome and process PRMs on scripted chat models, policy engines and
a loopback OpenAI-compatible server; P(yes) from log-probabilities, structured scores, escalation, the stated
fallback, the rubric, the traces, and a judge PRM in every strategy that takes a PRM."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, ValidationError

from langchain_ttc import create_best_of_n_graph, create_self_refine_graph, create_strategy_graph
from langchain_ttc.core.aggregation import aggregate
from langchain_ttc.core.judging import JudgePrompts, JudgeQuery, outcome_query, pairwise_query
from langchain_ttc.engines.judge import JudgePRM, LLMJudge
from langchain_ttc.engines.openai_policy import OpenAICompatiblePolicy
from langchain_ttc.strategies import (
    create_beam_search_graph,
    create_particle_filtering_graph,
    create_weighted_best_of_n_graph,
)
from tests.fakes import ScriptedChatModel, ScriptedPolicy, StepTreePolicy
from tests.servers import free_port, serving_in_thread


def rating(score: float, reason: str = "checked") -> dict[str, Any]:
    """A scripted structured reply (a tool call, as with_structured_output binds the schema as a tool)."""
    return {"name": "Rating", "args": {"score": score, "reason": reason}}


def user_text(messages: list[BaseMessage]) -> str:
    return str(messages[-1].content)


class LogprobChatModel(ScriptedChatModel):
    """A chat model that takes ``logprobs``/``top_logprobs`` (as ChatOpenAI does) and answers them.

    ``p_yes(question)`` gives P(yes) (or P(A) for a pairwise question); ``None`` answers with tokens that
    are neither option. Without ``logprobs`` it answers like :class:`ScriptedChatModel` (structured output).
    """

    logprobs: bool | None = None
    top_logprobs: int | None = None
    p_yes: Any = None
    seen_kwargs: list[dict[str, Any]] = Field(default_factory=list)
    seen_questions: list[str] = Field(default_factory=list)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        if not kwargs.get("logprobs"):
            return super()._generate(messages, stop, run_manager, **kwargs)
        self.seen_kwargs.append(kwargs)
        question = user_text(messages)
        self.seen_questions.append(question)
        p = self.p_yes(question)
        options = ("A", "B") if "Response A" in question else ("Yes", "No")
        if p is None:
            top = [{"token": "Maybe", "logprob": -0.1}, {"token": "Perhaps", "logprob": -2.5}]
        else:
            top = [
                {"token": options[0], "logprob": math.log(p)},
                {"token": f" {options[1].lower()}", "logprob": math.log(1 - p)},
            ]
        message = AIMessage(content=top[0]["token"])
        message.usage_metadata = {"input_tokens": 30, "output_tokens": 1, "total_tokens": 31}
        message.response_metadata = {
            "finish_reason": "length",
            "model_name": "judge-model-2025",
            "logprobs": {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"], "top_logprobs": top}]},
        }
        return ChatResult(generations=[ChatGeneration(message=message)])


class RunNames(BaseCallbackHandler):
    """Records the names of chain runs (with their outputs) and of chat-model runs."""

    def __init__(self) -> None:
        self.chains: list[str] = []
        self.outputs: dict[str, list[Any]] = {}
        self.llms = 0
        self._names: dict[Any, str] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, **kwargs: Any) -> None:
        name = kwargs.get("name") or ""
        self.chains.append(name)
        self._names[run_id] = name

    def on_chain_end(self, outputs: Any, *, run_id: Any, **kwargs: Any) -> None:
        self.outputs.setdefault(self._names.get(run_id, ""), []).append(outputs)

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.llms += 1


# ---------------------------------------------------------------- outcome and process modes


def test_an_outcome_judge_scores_the_last_step_and_the_aggregations_follow() -> None:
    chat = ScriptedChatModel(replies=[rating(8)])
    prm = JudgePRM(chat)
    assert prm.judge.method == "structured"  # no log-probabilities on this model
    (scores,) = prm.invoke([{"problem": "What is 2+2?", "steps": ["2+2", "=4", "so \\boxed{4}"]}])
    assert scores.scores == [1.0, 1.0, 0.8] and scores.num_tokens == 10  # the fake's 7 + 3 tokens
    assert (
        aggregate(scores.scores, "last") == aggregate(scores.scores, "min") == aggregate(scores.scores, "prod") == 0.8
    )
    assert aggregate(scores.scores, "mean") == pytest.approx(1 - 0.2 / 3)  # diluted by the step count
    question = user_text(chat.calls[0][0])
    assert "What is 2+2?" in question and "2+2\n\n=4\n\nso \\boxed{4}" in question
    assert "Is this answer correct and complete?" in question and '"score"' in question
    assert prm.invoke([{"problem": "p", "steps": []}])[0].scores == [] and len(chat.calls) == 1  # nothing to judge


def test_a_process_judge_asks_about_every_step_of_every_solution_in_one_batched_call() -> None:
    chat = ScriptedChatModel(replies=[rating(9)])
    prm = JudgePRM(chat, mode="process")
    handler = RunNames()
    requests = [{"problem": "p", "steps": ["a", "b", "c"]}, {"problem": "p", "steps": ["a", "d"]}]
    results = prm.invoke(requests, config={"callbacks": [handler]})
    assert [r.scores for r in results] == [[0.9, 0.9, 0.9], [0.9, 0.9]]
    # The shared prefix "a" is asked once; four distinct steps, all in one judge call (one batch).
    assert len(chat.calls) == 4 and prm.judge.stats.calls == 1 and handler.chains.count("ttc:judge:process") == 1
    asked = sorted(user_text(c[0]).split("Next step:\n")[1].split("\n")[0] for c in chat.calls)
    assert asked == ["a", "b", "c", "d"]
    third = next(user_text(c[0]) for c in chat.calls if "Next step:\nc" in user_text(c[0]))
    assert "Steps so far:\nStep 1: a\nStep 2: b" in third
    first = next(user_text(c[0]) for c in chat.calls if "Next step:\na" in user_text(c[0]))
    assert "Steps so far:\n(none)" in first
    # A search re-scores the same prefixes: answered from the cache, no model call, no tokens.
    again = prm.invoke([{"problem": "p", "steps": ["a", "b", "c", "e"]}])
    assert len(chat.calls) == 5 and again[0].scores == [0.9] * 4 and again[0].num_tokens == 10
    assert prm.stats.cached == 3
    assert JudgePRM(ScriptedChatModel(replies=[rating(9)]), mode="process", cache_size=0).cache_size == 0


def test_async_scoring_uses_the_models_async_api() -> None:
    chat = ScriptedChatModel(replies=[rating(6)])
    prm = JudgePRM(chat, mode="process")
    results = asyncio.run(prm.ainvoke([{"problem": "p", "steps": ["a", "b"]}]))
    assert results[0].scores == [0.6, 0.6] and chat.async_calls == 2


# ---------------------------------------------------------------- log-probabilities, escalation, the fallback


def test_log_probabilities_give_p_yes_and_a_reply_without_either_option_is_asked_again() -> None:
    chat = LogprobChatModel(
        replies=[rating(3)], p_yes=lambda q: None if "weird" in q else (0.9 if "good" in q else 0.2)
    )
    prm = JudgePRM(chat)
    assert prm.judge.method == "logprobs"  # the model takes logprobs/top_logprobs
    results = prm.invoke(
        [
            {"problem": "p", "steps": ["a good step"]},
            {"problem": "p", "steps": ["bad"]},
            {"problem": "p", "steps": ["weird"]},
        ]
    )
    assert [round(r.scores[-1], 6) for r in results] == [0.9, 0.2, 0.3]  # the third asked again, as an object
    assert {k: chat.seen_kwargs[0][k] for k in ("logprobs", "top_logprobs", "max_tokens")} == {
        "logprobs": True, "top_logprobs": 20, "max_tokens": 1
    }  # fmt: skip
    assert all(q.endswith("Reply with one word: Yes or No.") for q in chat.seen_questions)
    (structured,) = chat.calls  # the escalation: asked for the object, the rating format in the prompt
    assert "weird" in user_text(structured[0]) and '"score"' in user_text(structured[0])
    stats = prm.judge.stats
    assert stats.calls == 2 and stats.methods == {"logprobs": 2, "structured": 1} and prm.stats.fallbacks == 0
    assert results[2].num_tokens == 31 + 10  # both readings counted
    verdicts = prm.judge.invoke([outcome_query(prm.judge.prompts, "p", "weird")])
    assert verdicts[0].escalated and verdicts[0].method == "structured"
    pair = prm.judge.invoke([pairwise_query(prm.judge.prompts, "p", "good", "bad")])[0]
    assert pair.method == "logprobs" and pair.score == pytest.approx(0.9)  # P(A) from the letter tokens
    assert prm.judge.usage_by_model["judge-model-2025"]["requests"] >= 3


def test_a_judge_that_returns_garbage_scores_the_stated_fallback_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = ScriptedChatModel(replies=["I like turtles.", rating(7)])
    prm = JudgePRM(chat, mode="process", fallback_score=0.25)
    with caplog.at_level(logging.WARNING, logger="langchain_ttc.judge"):
        (scores,) = prm.invoke([{"problem": "p", "steps": ["x", "y"]}])
    assert sorted(scores.scores) == [0.25, 0.7]  # the unreadable reply scores fallback_score, never silently
    assert prm.stats.fallbacks == 1 and prm.judge.stats.unreadable == 1
    assert any("could not be read" in r.getMessage() for r in caplog.records)
    # An unreadable judgment is not cached: asked again next time.
    prm.invoke([{"problem": "p", "steps": ["x", "y"]}])
    assert len(chat.calls) == 3
    strict = JudgePRM(ScriptedChatModel(replies=["no idea"]), on_unreadable="raise")
    with pytest.raises(ValueError, match=r"could not be read as a score \('no idea'\).*on_unreadable='fallback'"):
        strict.invoke([{"problem": "p", "steps": ["x"]}])
    out_of_range = JudgePRM(ScriptedChatModel(replies=[rating(42)]))
    assert out_of_range.invoke([{"problem": "p", "steps": ["x"]}])[0].scores == [0.0]  # 42/10 is not a score
    assert out_of_range.stats.fallbacks == 1


def test_a_chat_model_without_structured_output_is_read_from_the_json_in_its_text() -> None:
    replies = iter([AIMessage(content='Sure. {"score": 10, "reason": "right"}'), AIMessage(content="Score: 4/10")])
    prm = JudgePRM(GenericFakeChatModel(messages=replies), mode="process", max_concurrency=1)
    assert prm.invoke([{"problem": "p", "steps": ["x", "y"]}])[0].scores == [1.0, 0.4]
    assert prm.judge.stats.methods == {"text": 2}


def test_a_policy_engine_judges_by_structured_text() -> None:
    policy = ScriptedPolicy(['{"score": 9, "reason": "fine"}', "Looks right to me."])
    prm = JudgePRM(policy, fallback_score=0.1)
    results = prm.invoke([{"problem": "p", "steps": ["a"]}, {"problem": "p", "steps": ["b"]}])
    assert [r.scores for r in results] == [[0.9], [0.1]] and prm.stats.fallbacks == 1
    (call,) = policy.calls  # one batched policy call, greedy, with the rating format in the prompt
    assert [r.temperature for r in call] == [0.0, 0.0] and all(r.max_tokens == 256 for r in call)
    assert all('"score"' in r.messages[-1]["content"] for r in call if r.messages)
    assert results[0].num_tokens == 10 + len('{"score": 9, "reason": "fine"}')
    with pytest.raises(ValueError, match="method='logprobs' needs a judge that returns log-probabilities"):
        LLMJudge(policy, method="logprobs")


# ---------------------------------------------------------------- a loopback OpenAI-compatible server


class FakeTokenizer:
    """Renders a chat as text and encodes characters as ids (enough for the server policy's prompt)."""

    chat_template = "fake"
    name_or_path = "fake"

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False, **options: Any) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) % 1000 for c in text]


class LogprobServer:
    """``/v1/completions`` answering with first-token top log-probabilities (vLLM's format), ``/v1/models``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> JSONResponse:
            return JSONResponse({"data": [{"id": "m", "max_model_len": 100000}]})

        @app.post("/v1/completions")
        async def complete(request: Request) -> JSONResponse:
            body = await request.json()
            self.bodies.append(body)
            prompt = "".join(chr(i) for i in body["prompt"])
            top = {" Yes": math.log(0.8), " No": math.log(0.2)} if "bad" not in prompt else {"No": -0.05, "Yes": -3.0}
            choice = {"index": 0, "text": max(top, key=top.__getitem__), "finish_reason": "length",
                      "logprobs": {"tokens": ["x"], "token_logprobs": [-0.1], "top_logprobs": [top]}}  # fmt: skip
            usage = {
                "prompt_tokens": len(body["prompt"]),
                "completion_tokens": 1,
                "total_tokens": len(body["prompt"]) + 1,
            }
            return JSONResponse({"choices": [choice], "usage": usage})

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))


@pytest.fixture
def logprob_server() -> Iterator[LogprobServer]:
    server = LogprobServer()
    with serving_in_thread(server.server):
        yield server


def test_the_server_policy_judges_by_p_yes_in_one_token_greedy_requests(logprob_server: LogprobServer) -> None:
    policy = OpenAICompatiblePolicy(f"http://127.0.0.1:{logprob_server.port}", model="m", tokenizer=FakeTokenizer())
    prm = JudgePRM(policy, mode="process")
    assert prm.judge.method == "logprobs"
    (scores,) = prm.invoke([{"problem": "p", "steps": ["good step", "bad step"]}])
    assert scores.scores[0] == pytest.approx(0.8) and scores.scores[1] == pytest.approx(
        math.exp(-3) / (math.exp(-3) + math.exp(-0.05))
    )
    for body in logprob_server.bodies:
        assert (body["max_tokens"], body["temperature"], body["logprobs"], body["model"]) == (1, 0.0, 20, "m")
        assert isinstance(body["prompt"], list)  # rendered here, as the policy renders it
    assert "Reply with one word: Yes or No." in "".join(chr(i) for i in logprob_server.bodies[0]["prompt"])
    assert scores.num_tokens == sum(len(b["prompt"]) + 1 for b in logprob_server.bodies)
    again = asyncio.run(JudgePRM(policy).ainvoke([{"problem": "p", "steps": ["good answer"]}]))
    assert again[0].scores == [pytest.approx(0.8)]


# ---------------------------------------------------------------- traces, usage, the rubric


def test_judge_calls_are_their_own_traced_runs_and_their_tokens_are_counted_per_model() -> None:
    chat = LogprobChatModel(replies=[rating(5)], p_yes=lambda q: 0.7)
    policy = ScriptedPolicy(["a\n\n\\boxed{1}", "b\n\n\\boxed{2}"])
    graph = create_best_of_n_graph(policy, JudgePRM(chat), n=2)
    handler = RunNames()
    with get_usage_metadata_callback() as usage:
        result = graph.invoke({"problem": "p"}, config={"callbacks": [handler]})["result"]
    assert {"ttc:policy", "ttc:prm", "ttc:judge:outcome"} <= set(handler.chains)
    (judged,) = handler.outputs["ttc:judge:outcome"]
    assert judged["usage_metadata"] == {"input_tokens": 60, "output_tokens": 2, "total_tokens": 62}
    assert judged["unreadable"] == 0 and len(judged["verdicts"]) == 2
    assert result["usage"]["prm_calls"] == 1 and result["usage"]["prm_tokens"] == 62  # the judge is the PRM here
    assert usage.usage_metadata["judge-model-2025"]["input_tokens"] == 60  # LangChain's per-model tally sees it


def test_the_rubric_is_the_users_to_replace_and_is_checked() -> None:
    chat = ScriptedChatModel(replies=[rating(10)])
    prompts = JudgePrompts(
        system=None, outcome="Grade this essay.\nTask: {problem}\nEssay: {solution}", rating="JSON please"
    )
    JudgePRM(chat, prompts=prompts).invoke([{"problem": "Write about rain.", "steps": ["Rain falls."]}])
    (messages, _, _) = chat.calls[0]
    assert (
        len(messages) == 1
        and user_text(messages) == "Grade this essay.\nTask: Write about rain.\nEssay: Rain falls.\n\nJSON please"
    )
    with pytest.raises(ValidationError, match=r"process=.* must use \{previous_steps\} and \{problem\} and \{step\}"):
        JudgePrompts(process="Is {step} right?")
    with pytest.raises(ValidationError, match="is not a format template"):
        JudgePrompts(pairwise="{problem} {first} {second")


def test_bad_judges_and_options_are_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match="is neither a LangChain chat model nor a PolicyEngine"):
        JudgePRM("gpt-4o")  # type: ignore[arg-type]
    chat = ScriptedChatModel(replies=[rating(1)])
    with pytest.raises(ValueError, match=r"fallback_score=2 is outside \[0, 1\]"):
        JudgePRM(chat, fallback_score=2)
    with pytest.raises(ValueError, match="mode='steps' is not known"):
        JudgePRM(chat, mode="steps")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method='vibes' is not known"):
        LLMJudge(chat, method="vibes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="method cannot be set with a judge already built"):
        JudgePRM(LLMJudge(chat), method="structured")
    with pytest.raises(TypeError, match="unexpected keyword arguments 'temperature'"):
        LLMJudge(chat).invoke([JudgeQuery(task="outcome", text="x")], temperature=0)
    assert LLMJudge(chat).invoke([]) == [] and chat.calls == []  # nothing asked, no call


# ---------------------------------------------------------------- wherever a PRM goes


def test_a_judge_prm_serves_every_strategy_that_takes_a_prm() -> None:
    def judge() -> JudgePRM:
        return JudgePRM(LogprobChatModel(replies=[rating(5)], p_yes=lambda q: 0.9 if "\\boxed{2}" in q else 0.3))

    texts = ["1+1=2.\n\nSo \\boxed{2}.", "1+1=3.\n\nSo \\boxed{3}.", "1+1=2, \\boxed{2}"]
    best = create_best_of_n_graph(ScriptedPolicy(texts), judge(), n=3).invoke({"problem": "1+1?"})
    weighted = create_weighted_best_of_n_graph(ScriptedPolicy(texts), judge(), n=3).invoke({"problem": "1+1?"})
    assert best["answer"] == weighted["answer"] == "2"
    tree = {
        "": [("1+1=2.\n\n", "stop"), ("1+1=3.\n\n", "stop")],
        "1+1=2.\n\n": [("So \\boxed{2}.", "eos")],
        "1+1=3.\n\n": [("So \\boxed{3}.", "eos")],
    }
    process = JudgePRM(
        LogprobChatModel(replies=[rating(5)], p_yes=lambda q: 0.1 if "=3" in q.split("Next step:")[1] else 0.9),
        mode="process",
    )
    beam = create_beam_search_graph(StepTreePolicy(tree), process, n=2, beam_width=1, max_iterations=3)
    assert beam.invoke({"problem": "1+1?"})["answer"] == "2"
    particles = create_particle_filtering_graph(
        StepTreePolicy(tree), process, n=2, max_iterations=3, resampling_temperature=0.01, seed=0
    )
    assert particles.invoke({"problem": "1+1?"})["answer"] == "2"
    critic = create_self_refine_graph(
        ScriptedPolicy(["1+1=3.\n\nSo \\boxed{3}.", "1+1=2.\n\nSo \\boxed{2}."]), judge(), max_revisions=1
    )
    refined = critic.invoke({"problem": "1+1?"})
    assert refined["answer"] == "2" and len(refined["result"]["metadata"]["drafts"]) == 2  # the judge flagged the draft
    routed = create_strategy_graph("compute_optimal", ScriptedPolicy(texts), judge(), n=16)
    assert routed.invoke({"problem": "1+1?"})["result"]["usage"]["prm_calls"] >= 1  # the router's pilots are judged
