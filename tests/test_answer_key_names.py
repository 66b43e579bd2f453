"""Answer keys by name (``answers="reference-math"``) on every surface: the lookup and its errors, the
strategies' typed config, every strategy family's vote, the CLI, ``ttc serve`` and a Studio context.

The world: five finished solutions of one problem, two of them stating ``0.5`` and ``1/2`` without a
``\\boxed{}``. The strict key (``math``, the default) reads no answer from those two, so ``\\boxed{3}``
(two votes) beats ``\\boxed{1/2}`` (one); search-and-learn's key (``reference-math``) reads them,
groups ``0.5``, ``\\frac{1}{2}`` and ``\\frac12`` by canonical form and that answer wins, three votes
to two. Every PRM score is equal, so weighted votes count votes too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_ttc import (
    create_beam_search_graph,
    create_dvts_graph,
    create_majority_vote_graph,
    create_particle_filtering_graph,
    create_self_refine_graph,
    create_weighted_best_of_n_graph,
)
from langchain_ttc.core.answers import (
    MATH_ANSWERS,
    MULTIPLE_CHOICE_ANSWERS,
    NUMBER_ANSWERS,
    REFERENCE_MATH_ANSWERS,
    SHORT_ANSWERS,
    AnswerKey,
    multiple_choice_answers,
    schema_answers,
)
from langchain_ttc.core.search import Beam, answered
from langchain_ttc.core.tool_calls import TOOL_CALL_ANSWERS
from langchain_ttc.core.types import Candidate
from langchain_ttc.strategies.config import (
    ANSWER_KEY_NAMES,
    StrategyConfig,
    answer_key_named,
    answers_setting,
    choose_answers,
    resolve_answer_key,
    validated,
)
from langchain_ttc.strategies.driver import run_calls
from langchain_ttc.strategies.routing.compute_optimal import ComputeOptimalConfig, draw_pilots
from langchain_ttc.wiring import STRATEGIES, create_strategy_graph
from tests.fakes import ScriptedPolicy, ScriptedPRM, StepTreePolicy

HALF = "Halve it. The answer is 0.5"
HALF_AGAIN = "Thus the answer is 1/2"
TEXTS = [HALF, "So \\boxed{1/2}", HALF_AGAIN, "So \\boxed{3}", "So \\boxed{3}"]
"""Under math: 1/2 once, 3 twice (the two stated answers do not vote). Under reference-math: 1/2 three times."""
FLAT = ScriptedPRM(lambda _problem, _step: 0.5)


def _tree() -> StepTreePolicy:
    """Every solution in one step from the empty one (each of the five handed out in turn)."""
    return StepTreePolicy({"": [(text, "eos") for text in TEXTS]})


def _groups(output: dict[str, Any]) -> list[list[str]]:
    """The result's answer groups as the texts of their candidates."""
    result = output["result"]
    return [[result["candidates"][i]["text"] for i in g["indices"]] for g in result["groups"]]


def _assert_voted_with(output: dict[str, Any], answers: str) -> None:
    if answers == "reference-math":
        assert output["answer"] == "0.5"
        assert sorted(max(_groups(output), key=len)) == sorted([HALF, "So \\boxed{1/2}", HALF_AGAIN])
    else:
        assert output["answer"] == "3"
        assert all(HALF not in group for group in _groups(output))  # a stated answer without \boxed{} has no vote
        assert ["So \\boxed{1/2}"] in _groups(output)


# ---- the lookup ----


def test_every_shipped_key_has_a_name_that_finds_it() -> None:
    shipped = [MATH_ANSWERS, REFERENCE_MATH_ANSWERS, NUMBER_ANSWERS, SHORT_ANSWERS, MULTIPLE_CHOICE_ANSWERS]
    for name, key in zip(ANSWER_KEY_NAMES, [*shipped, TOOL_CALL_ANSWERS], strict=True):
        assert answer_key_named(name) is key
        assert answer_key_named(answers_setting(key)) is key  # the setting that stands for a key names it back
    assert answer_key_named("multiple-choice:ABCD") is multiple_choice_answers("ABCD")
    assert answer_key_named("multiple-choice:ABCD").answer_of("Answer: E") is None  # its own letters only


@pytest.mark.parametrize("name", ["maths", "", "MATH", "multiple-choice:abcd", "multiple-choice:", "custom:x"])
def test_an_unknown_name_names_the_parameter_the_value_and_the_known_names(name: str) -> None:
    with pytest.raises(ValueError) as error:
        answer_key_named(name, parameter="--answers", objects=False)
    message = str(error.value)
    assert message.startswith(f"--answers={name!r} names no answer key; pass one of 'math', 'reference-math'")
    assert "'tool_calls'" in message and "answer_key=" not in message  # no key object travels by name
    with pytest.raises(ValueError, match=r"or build the graph with answer_key=<an AnswerKey>"):
        answer_key_named(name)


def test_the_config_checks_the_name_at_construction() -> None:
    assert validated(StrategyConfig, n=1).answers == "math"
    assert validated(StrategyConfig, n=1, answers="reference-math").answer_key() is REFERENCE_MATH_ANSWERS
    with pytest.raises(ValueError, match=r"answers='maths' names no answer key"):
        validated(StrategyConfig, n=1, answers="maths")
    policy = ScriptedPolicy(TEXTS)
    for build in (
        lambda: create_majority_vote_graph(policy, n=1, answers="maths"),
        lambda: create_strategy_graph("beam_search", policy, FLAT, n=4, answers="refernce-math"),
    ):
        with pytest.raises(ValueError, match=r"names no answer key"):
            build()
    assert policy.calls == []


def test_a_key_object_is_the_one_source_of_truth_when_given() -> None:
    exact = AnswerKey(name="exact", extract=lambda text: text.strip() or None, equivalent=str.__eq__)
    assert choose_answers("math", exact) == "custom:exact"  # answers left at its default
    assert choose_answers("reference-math", REFERENCE_MATH_ANSWERS) == "reference-math"  # both say the same
    with pytest.raises(ValueError, match=r"^answers='number' and answer_key=REFERENCE_MATH_ANSWERS name two answer"):
        create_majority_vote_graph(ScriptedPolicy(TEXTS), n=1, answers="number", answer_key=REFERENCE_MATH_ANSWERS)
    with pytest.raises(TypeError, match=r"answer_key='math' is not an AnswerKey"):
        create_majority_vote_graph(ScriptedPolicy(TEXTS), n=1, answer_key="math")  # type: ignore[arg-type]
    # a custom:<name> setting belongs to the graph built with that object; another graph refuses it
    with pytest.raises(ValueError, match=r"answers='custom:exact' names the answer_key= object of another graph"):
        create_strategy_graph("majority_vote", ScriptedPolicy(TEXTS), n=1, answers="custom:exact")
    assert resolve_answer_key("custom:exact", exact) is exact
    schema_key = schema_answers(StrategyConfig)
    assert answers_setting(schema_key) == "custom:schema:StrategyConfig"


def test_a_custom_key_votes_and_a_run_may_name_a_shipped_one_instead() -> None:
    texts = ["A", "a ", "B", "B", "B"]
    upper = AnswerKey(name="upper", extract=lambda text: text.strip().upper() or None, equivalent=str.__eq__)
    graph = create_majority_vote_graph(ScriptedPolicy(texts), n=5, answer_key=upper)
    output = graph.invoke({"problem": "p"})
    assert output["answer"] == "B" and len(output["result"]["groups"]) == 2  # "A" and "a " are one answer
    assert graph.invoke({"problem": "p"}, context={"answers": "math"})["answer"] is None  # nothing is boxed
    with pytest.raises(ValueError, match=r"answers='custom:other' names the answer_key= object of another graph"):
        graph.invoke({"problem": "p"}, context={"answers": "custom:other"})


# ---- every strategy family votes with the named key ----

BUILDS: dict[str, Callable[[str], Any]] = {
    "majority_vote": lambda answers: create_majority_vote_graph(ScriptedPolicy(TEXTS), n=5, answers=answers),
    "weighted_best_of_n": lambda answers: create_weighted_best_of_n_graph(
        ScriptedPolicy(TEXTS), FLAT, n=5, answers=answers
    ),
    "adaptive_majority_vote": lambda answers: create_strategy_graph(
        "adaptive_majority_vote", ScriptedPolicy(TEXTS), n=5, wave_size=5, answers=answers
    ),
    "beam_search": lambda answers: create_beam_search_graph(_tree(), FLAT, n=5, beam_width=5, answers=answers),
    "dvts": lambda answers: create_dvts_graph(_tree(), FLAT, n=5, beam_width=5, answers=answers),
    "particle_filtering": lambda answers: create_particle_filtering_graph(
        _tree(), FLAT, n=5, resampling="systematic", seed=0, answers=answers
    ),  # equal weights: systematic resampling draws each particle once
    "self_refine": lambda answers: create_self_refine_graph(
        ScriptedPolicy(TEXTS), "policy", chains=5, max_revisions=0, selection="vote", answers=answers
    ),
}


@pytest.mark.parametrize("answers", ["math", "reference-math"])
@pytest.mark.parametrize("strategy", sorted(BUILDS))
def test_each_family_reads_and_votes_with_the_named_key(strategy: str, answers: str) -> None:
    output = BUILDS[strategy](answers).invoke({"problem": "What is half of 1?"})
    _assert_voted_with(output, answers)
    readable = [c["answer"] for c in output["result"]["candidates"] if c["text"] == HALF]
    assert readable == (["0.5"] if answers == "reference-math" else [None])  # the candidates' answers too


@pytest.mark.parametrize("strategy", ["majority_vote", "beam_search"])
def test_a_studio_context_names_the_key_per_run(strategy: str) -> None:
    """The context dict Studio sends (its ``answers`` field) changes the key of one run, not the graph's."""
    graph = BUILDS[strategy]("math")
    _assert_voted_with(graph.invoke({"problem": "p"}, context={"answers": "reference-math"}), "reference-math")
    _assert_voted_with(BUILDS[strategy]("math").invoke({"problem": "p"}), "math")
    with pytest.raises(ValueError, match=r"answers='maths' names no answer key"):
        BUILDS[strategy]("math").invoke({"problem": "p"}, context={"answers": "maths"})


def test_every_strategy_has_the_option() -> None:
    assert all("answers" in spec.config.model_fields for spec in STRATEGIES.values())


def test_the_dvts_stop_rule_reads_boxed_whatever_the_key() -> None:
    """A step that states its answer without ``\\boxed{}`` does not end a DVTS subtree, under any key."""
    stated, boxed = Beam(text="The answer is 0.5\n\n"), Beam(text="So \\boxed{1/2}\n\n")
    assert answered(stated).active and answered(boxed).complete
    tree = {
        "": [("The answer is 0.5\n\n", "stop"), ("So \\boxed{1/2}\n\n", "stop")],
        "The answer is 0.5\n\n": [("Indeed \\boxed{0.5}", "eos")],
    }
    output = create_dvts_graph(
        StepTreePolicy(tree), FLAT, n=2, beam_width=1, answers="reference-math", record_tree=True
    ).invoke({"problem": "p"})
    texts = sorted(c["text"] for c in output["result"]["candidates"])
    assert texts == ["So \\boxed{1/2}\n\n", "The answer is 0.5\n\nIndeed \\boxed{0.5}"]  # the first went on a step
    assert output["answer"] == "\\frac{1}{2}" and len(output["result"]["groups"]) == 1  # 1/2 and 0.5: one answer


def test_self_refines_unchanged_rule_compares_with_the_runs_key() -> None:
    from langchain_ttc.core.refine import Draft, stop_reason

    def draft(revision: int, answer: str) -> Draft:
        candidate = Candidate(text=answer, steps=[answer], answer=answer, finish_reason="eos")
        return Draft(chain=0, revision=revision, candidate=candidate)

    chain = [draft(0, "0.5"), draft(1, "1/2")]
    exact = AnswerKey(name="exact", extract=str.strip, equivalent=str.__eq__)
    assert stop_reason(chain, max_revisions=3) == "unchanged"  # the same number under math
    assert stop_reason(chain, max_revisions=3, key=exact) is None  # two answers under an exact key: revise on


def test_the_routers_agreement_groups_pilots_with_the_runs_key() -> None:
    from langchain_ttc.strategies.routing.difficulty import agreement_difficulty, estimate_difficulty

    pilots = [Candidate(text=a, steps=[a], answer=a, finish_reason="eos") for a in ("1/2", "0.5", "3", "1/2")]
    exact = AnswerKey(name="exact", extract=str.strip, equivalent=str.__eq__)
    assert estimate_difficulty(agreement_difficulty, pilots, key=MATH_ANSWERS) == 0.25
    assert estimate_difficulty(agreement_difficulty, pilots, key=exact) == 0.5


def test_the_routers_pilots_are_read_with_the_key() -> None:
    config = validated(ComputeOptimalConfig, n=4, answers="reference-math")
    pilots, _ = run_calls(
        draw_pilots(ScriptedPolicy(TEXTS), None, "p", [{"role": "user", "content": "p"}], count=5, config=config,
                    aggregation="last")
    )  # fmt: skip
    assert [c.answer for c in pilots] == ["0.5", "\\frac{1}{2}", "\\frac{1}{2}", "3", "3"]


# ---- the CLI ----


@pytest.fixture
def scripted_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_ttc.engines.settings import EngineSettings

    monkeypatch.setattr(EngineSettings, "load_policy", lambda self: ScriptedPolicy(TEXTS))
    monkeypatch.setattr(EngineSettings, "load_prm", lambda self: FLAT)


@pytest.mark.usefixtures("scripted_cli")
@pytest.mark.parametrize("strategy", ["majority_vote", "weighted_best_of_n"])
def test_ttc_solve_takes_the_flag(strategy: str, capsys: pytest.CaptureFixture[str]) -> None:
    from langchain_ttc.cli import main

    ask = ["solve", "What is half of 1?", "--strategy", strategy, "--n", "5", "--json"]
    assert main([*ask, "--answers", "reference-math"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "0.5"
    assert main(ask) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "3"
    assert main([*ask, "--answers", "maths"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("ttc solve: error: --answers='maths' names no answer key; pass one of 'math'")


def test_ttc_eval_takes_the_flag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three of four samples state 7 without ``\\boxed{}``, one boxes 5: the strict key votes 5 (wrong), the
    reference key 7 (right), at every budget the subsampled curve has."""
    from langchain_ttc.cli import main
    from langchain_ttc.engines.settings import EngineSettings

    stated = ["The answer is 7", "The answer is 7", "So \\boxed{5}", "The answer is 7"]
    monkeypatch.setattr(EngineSettings, "load_policy", lambda self: ScriptedPolicy(stated))
    monkeypatch.setattr(EngineSettings, "load_prm", lambda self: FLAT)
    dataset = tmp_path / "one.jsonl"
    dataset.write_text(json.dumps({"problem": "What is 3+4?", "answer": "7"}) + "\n")
    correct = {}
    for answers in ("math", "reference-math"):
        output = tmp_path / f"{answers}.jsonl"
        ask = ["eval", "--dataset", str(dataset), "--strategy", "majority_vote", "weighted_best_of_n", "--n-max", "4"]
        assert main([*ask, "--answers", answers, "--output", str(output)]) == 0
        header, record = (json.loads(line) for line in output.read_text().splitlines())
        assert header["config"]["answers"] == answers  # a resume under another key is refused
        correct[answers] = record["correct"]
    for run in ("majority_vote@4", "weighted_best_of_n@4", "majority_vote@1"):
        assert (correct["math"][run], correct["reference-math"][run]) == (False, True), run
    capsys.readouterr()
    assert main(["eval", "--dataset", str(dataset), "--answers", "maths"]) == 2
    assert capsys.readouterr().err.startswith("ttc eval: error: --answers='maths' names no answer key")


def test_the_flags_help_names_the_keys(capsys: pytest.CaptureFixture[str]) -> None:
    from langchain_ttc.cli.main import build_parser

    for command in ("solve", "serve", "eval"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert "--answers" in shown and "reference-math" in shown and "tool_calls" in shown, command


# ---- ttc serve ----


def _post(body: dict[str, Any], *, options: dict[str, Any] | None = None) -> tuple[httpx.Response, ScriptedPolicy]:
    from langchain_ttc.serving.app import create_app
    from langchain_ttc.serving.catalog import StrategyCatalog

    policy = ScriptedPolicy(TEXTS)
    app = create_app(StrategyCatalog(policy, FLAT, default_n=5, max_n=8, options=options))

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ttc") as client:
            return await client.post("/v1/chat/completions", json=body)

    return asyncio.run(send()), policy


@pytest.mark.parametrize("model", ["majority_vote:5", "weighted_best_of_n:5"])
def test_ttc_serve_takes_the_key_from_the_request_or_its_settings(model: str) -> None:
    ask = {"model": model, "messages": [{"role": "user", "content": "What is half of 1?"}]}
    assert _post(ask)[0].json()["ttc"]["answer"] == "3"
    assert _post({**ask, "ttc_answers": "reference-math"})[0].json()["ttc"]["answer"] == "0.5"
    served = {"answers": "reference-math"}  # what TTC_SERVE_ANSWERS / [serve] answers / --answers give the catalog
    assert _post(ask, options=served)[0].json()["ttc"]["answer"] == "0.5"
    assert _post({**ask, "ttc_answers": "math"}, options=served)[0].json()["ttc"]["answer"] == "3"
    for name in ("maths", "custom:exact"):
        response, policy = _post({**ask, "ttc_answers": name})
        assert response.status_code == 400 and policy.calls == []  # refused before the run
        error = response.json()["error"]
        assert error["param"] == "ttc_answers" and error["code"] == "invalid_value"
        assert error["message"].startswith(f"ttc_answers={name!r} names no answer key; pass one of 'math'")


def test_the_serve_setting_is_checked_and_reaches_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_ttc.engines.settings import EngineSettings, load_engine_settings
    from langchain_ttc.serving.server import build_app
    from langchain_ttc.serving.settings import load_serve_settings

    assert load_serve_settings(environ={}).answers == "math"
    settings = load_serve_settings(environ={"TTC_SERVE_ANSWERS": "reference-math"})
    with pytest.raises(ValueError, match=r"^TTC_SERVE_ANSWERS: answers='maths' names no answer key"):
        load_serve_settings(environ={"TTC_SERVE_ANSWERS": "maths"})
    monkeypatch.setattr(EngineSettings, "load_policy", lambda self: ScriptedPolicy(TEXTS))
    monkeypatch.setattr(EngineSettings, "load_prm", lambda self: FLAT)
    app = build_app(load_engine_settings(environ={}), settings)
    assert app.state.catalog.options["answers"] == "reference-math"
