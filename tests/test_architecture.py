"""The house the strategies live in: loop budgets, the search tree as data, the registry as the one
source of strategy facts, and the chat-model facade passing callbacks and stop strings through."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from langchain_ttc import create_beam_search_graph, create_dvts_graph, create_self_refine_graph
from langchain_ttc.core.tree import TreeNode
from langchain_ttc.integrations.chat_model import TTCChatModel
from langchain_ttc.strategies import registry
from langchain_ttc.strategies.context import OPTION_FIELDS, TTCContext
from langchain_ttc.wiring import STRATEGIES, option_fields
from tests.fakes import ScriptedPolicy, StepTreePolicy, last_step_prm

PACKAGE = Path(__file__).resolve().parents[1] / "langchain_ttc"


class Counting(StepTreePolicy):
    """Writes one more numbered step per call (never ends): every search runs to max_iterations."""

    def __init__(self) -> None:
        super().__init__({})

    def _generate(self, requests: list[Any]) -> list[Any]:
        for r in requests:
            self.tree.setdefault(r.partial, [(f"s{r.partial.count(chr(10)) // 2}\n\n", "stop")])
            if not r.stop:
                self.tree[r.partial] = [("\\boxed{1}", "eos")]
        return super()._generate(requests)


def _ways(graph: Any) -> list[dict[str, Any]]:
    """The output of one run through invoke, batch, stream and astream, with LangChain's default config."""

    async def astreamed() -> dict[str, Any]:
        return [chunk async for chunk in graph.astream({"problem": "p"}, stream_mode="values")][-1]

    return [
        graph.invoke({"problem": "p"}),
        graph.batch([{"problem": "p"}])[0],
        list(graph.stream({"problem": "p"}, stream_mode="values"))[-1],
        asyncio.run(astreamed()),
    ]


def test_long_loops_complete_under_the_default_recursion_limit() -> None:
    beam = create_beam_search_graph(Counting(), last_step_prm({}), n=2, beam_width=2, max_iterations=100)
    for output in _ways(beam):
        assert output["answer"] == "1" and len(output["result"]["metadata"]["iterations"]) == 100
    dvts = create_dvts_graph(Counting(), last_step_prm({}), n=2, beam_width=2, max_iterations=100)
    assert all(output["answer"] == "1" for output in _ways(dvts))
    answers = iter(range(10**6))  # every revision gives a new answer, and the critic always flags step 1
    policy = ScriptedPolicy([f"Step.\n\nThe answer is \\boxed{{{next(answers)}}}." for _ in range(200)])
    refine = create_self_refine_graph(policy, lambda _p, _s: "Step 1 is wrong.", max_revisions=13)
    for output in _ways(refine):
        assert len(output["result"]["metadata"]["drafts"]) == 14  # a draft and 13 revisions
    with pytest.raises(Exception, match="Recursion limit of 10"):  # an explicit limit is kept
        beam.invoke({"problem": "p"}, {"recursion_limit": 10})


def test_no_compiled_graph_is_reclassed() -> None:
    offenders = [p.name for p in PACKAGE.rglob("*.py") if re.search(r"\.__class__\s*=", p.read_text())]
    assert offenders == []


def test_the_search_tree_is_data_with_ids_parents_and_fates() -> None:
    tree = {
        "": [("A\n\n", "stop"), ("B\n\n", "stop"), ("C\n\n", "stop"), ("D\n\n", "length")],
        "A\n\n": [("\\boxed{1}", "eos"), ("A2\n\n", "stop")],
        "B\n\n": [("\\boxed{2}", "eos"), ("B2\n\n", "stop")],
        "A\n\nA2\n\n": [("\\boxed{1}", "eos")],
        "B\n\nB2\n\n": [("\\boxed{3}", "eos")],
    }
    scores = {"A": 0.9, "B": 0.8, "C": 0.1, "\\boxed{1}": 0.9, "\\boxed{2}": 0.2, "A2": 0.7, "B2": 0.6}
    plain = create_beam_search_graph(StepTreePolicy(tree), last_step_prm(scores), n=4, beam_width=2)
    assert "tree" not in plain.invoke({"problem": "p"})["result"]["metadata"]  # off the hot path by default
    graph = create_beam_search_graph(StepTreePolicy(tree), last_step_prm(scores), n=4, beam_width=2, record_tree=True)
    result = graph.invoke({"problem": "p"})["result"]
    nodes = [TreeNode.model_validate(n) for n in result["metadata"]["tree"]]
    by_id = {n.id: n for n in nodes}
    assert len(by_id) == len(nodes) and nodes[0].parent is None  # unique ids; the root first
    assert all(n.parent in by_id for n in nodes[1:])  # every node hangs off a node of the tree
    first = {n.step: n.fate for n in nodes if n.parent == nodes[0].id}
    assert first == {"A\n\n": "kept", "B\n\n": "kept", "C\n\n": "pruned", "D\n\n": "truncated"}
    chosen = [n for n in nodes if n.fate == "chosen"]
    assert len(chosen) == 1 and chosen[0].step == "\\boxed{1}"
    path = []  # the chosen node's path back to the root spells the chosen solution
    node: TreeNode | None = chosen[0]
    while node is not None:
        path.append(node.step)
        node = by_id.get(node.parent) if node.parent is not None else None
    assert "".join(reversed(path)) == result["solution"]
    assert {n.fate for n in nodes} >= {"kept", "pruned", "finished", "truncated", "chosen"}


def _code_strings(path: Path) -> set[str]:
    """The string literals of a module's code (docstrings and ``__all__`` left out)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            skip.add(id(body[0].value))
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            skip.update(id(c) for c in ast.walk(node.value))
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
    }


def test_strategy_names_live_in_their_own_modules_only() -> None:
    # Every strategy's name appears in the code of its own module and nowhere else in the package:
    # the CLI, evaluation, calibration and the router read them from the registry.
    for name in STRATEGIES:
        homes = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if name in _code_strings(p)]
        assert len(homes) == 1, f"{name} is named in {homes}"


def test_only_the_composition_root_registers_at_import_time() -> None:
    """Model aliases are registered, and the catalog assembled, in langchain_ttc/wiring.py alone."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        calls = [
            n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
        ]  # statements at module level that are bare calls: registrations
        names = {ast.unparse(c.value.func) for c in calls if isinstance(c.value, ast.Call)}
        if path.name != "wiring.py":
            assert not {n for n in names if "register" in n}, f"{path} registers at import time: {names}"
        mutations = [
            n for n in tree.body if isinstance(n, ast.Assign) and any(isinstance(t, ast.Subscript) for t in n.targets)
        ]
        assert not mutations or path.name == "wiring.py", f"{path} fills a table at import time"
    from langchain_ttc.engines.references import MODEL_ALIASES

    assert {"arith:", "smollm2"} <= set(MODEL_ALIASES) and "compute_optimal" in STRATEGIES
    assert "compute_optimal" not in registry.STRATEGIES  # the registry holds the families; the root adds the router


def test_the_runtime_context_sets_only_options_some_strategy_has() -> None:
    assert OPTION_FIELDS <= set(option_fields())


def factory_of(strategy: str) -> Any:
    """A strategy's factory: ``create_<name>_graph`` in the module of its registry builder."""
    build = STRATEGIES[strategy].build
    module = sys.modules[getattr(build, "func", build).__module__]
    return getattr(module, f"create_{strategy}_graph")


DERIVED = {
    # factory parameters that stand for a config field under another name or type, and why
    "self_refine": {"n": "chains x (max_revisions + 1)", "critic": "the critic object (or its name)"},
    "compute_optimal": {"n": "budget", "table": "a path, mapping or table", "estimator": "a name or a callable"},
}


def _documented(function: Any) -> dict[str, str]:
    """The Args entries of a Google-style docstring, whitespace normalised."""
    doc = inspect.getdoc(function) or ""
    block = doc.split("Args:\n", 1)[1].split("\n\n", 1)[0] if "Args:\n" in doc else ""
    entries = re.split(r"\n(?=\s{4}\w+: )", "\n" + block)
    return {e.strip().split(":", 1)[0]: " ".join(e.strip().split(":", 1)[1].split()) for e in entries if e.strip()}


def _unwrap(annotation: Any) -> set[Any]:
    """An annotation as a flat set of its options (``X | None`` and Literal values spread out)."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return set(args)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_unwrap(a) for a in args))
    return {annotation}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_option_of_a_factory_is_its_configs_field(strategy: str) -> None:
    """A factory's keyword options are its config's fields: the same default, type and description."""
    config, factory = STRATEGIES[strategy].config, factory_of(strategy)
    hints = typing.get_type_hints(factory)
    parameters = inspect.signature(factory).parameters
    documented = _documented(factory)
    derived = DERIVED.get(strategy, {})
    for name, info in config.model_fields.items():
        if name in derived:
            continue
        assert name in parameters, f"{strategy}: option {name} is not a parameter of {factory.__name__}"
        parameter = parameters[name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, f"{factory.__name__}({name}) is not keyword-only"
        if not info.is_required():
            assert parameter.default == info.default, f"{factory.__name__}({name}) default differs from {config}"
        assert _unwrap(hints[name]) == _unwrap(info.annotation), f"{factory.__name__}({name}) type differs"
        assert documented.get(name) == " ".join((info.description or "").split()), (
            f"{factory.__name__}'s docstring for {name} differs from {config.__name__}.{name}'s description"
        )


def test_every_option_has_its_checked_line_in_the_studio_context() -> None:
    """TTCContext has one field per option of any strategy: its type the union of the configs', ``None`` by
    default, its description holding every config's description of it (each written once, in its config)."""
    context = {f.name: f for f in dataclasses.fields(TTCContext)}
    hints = typing.get_type_hints(TTCContext)
    options: dict[str, list[Any]] = {}
    for spec in STRATEGIES.values():
        for name, info in spec.config.model_fields.items():
            options.setdefault(name, []).append(info)
    assert set(options) == OPTION_FIELDS
    for name, infos in options.items():
        assert context[name].default is None
        assert _unwrap(hints[name]) == set().union(*(_unwrap(i.annotation) for i in infos)) | {type(None)}, name
        for info in infos:
            assert info.description in context[name].metadata["description"], name


def test_the_facade_passes_callbacks_and_stop_through() -> None:
    class Runs(BaseCallbackHandler):
        def __init__(self) -> None:
            self.names: list[str] = []

        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            self.names.append(kwargs.get("name") or "")

        def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
            self.names.append(kwargs.get("name") or "")

    from langchain_ttc import create_majority_vote_graph

    graph = create_majority_vote_graph(ScriptedPolicy(["First.\n\nThen \\boxed{4}. DONE extra"]), n=2)
    handler = Runs()
    message = TTCChatModel(graph=graph).invoke("What is 2+2?", config={"callbacks": [handler]}, stop=["DONE"])
    assert message.content == "First.\n\nThen \\boxed{4}. "
    assert "majority_vote" in handler.names and "ttc:policy" in handler.names  # nested under the chat model
