"""The ``ttc`` command line.

In: a problem and options. Out: the answer, a table of candidates with their scores, and usage (or
the whole result as JSON with ``--json``). With no model flags it runs offline on the Arith
checkpoints shipped inside the package.

Example::

    ttc solve "Keep only the last digit after each step. What is 3+4*3?" --strategy weighted_best_of_n --n 8
    ttc solve "... What is 3+4*3-5+7*9-2*7+8?" --strategy beam_search --n 16 --beam-width 4
    ttc solve "..." --policy meta-llama/Llama-3.2-1B-Instruct --prm peiyi9979/math-shepherd-mistral-7b-prm --json
    TTC_POLICY_URL=http://127.0.0.1:8001 ttc serve --port 8000 --api-key secret

Models come from the flags, else the ``TTC_POLICY_*`` / ``TTC_PRM_*`` environment variables, else the
config file (``--config`` or ``TTC_CONFIG``), else the shipped Arith checkpoints
(:mod:`langchain_ttc.engines.settings`).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NoReturn, cast

from langchain_ttc.core.aggregation import AGGREGATIONS
from langchain_ttc.core.prompts import SYSTEM_PROMPTS
from langchain_ttc.core.types import TTCResult
from langchain_ttc.engines.loading import BACKENDS, PRM_PROTOCOLS
from langchain_ttc.engines.openai_policy import ServerError
from langchain_ttc.engines.settings import EngineSettings, ModelSettings, load_engine_settings
from langchain_ttc.evaluation.fit import BudgetChoice
from langchain_ttc.evaluation.scaling import sample_strategies
from langchain_ttc.strategies.config import ANSWER_KEY_NAMES, answer_key_named, validated
from langchain_ttc.strategies.routing.difficulty import ESTIMATORS
from langchain_ttc.strategies.routing.table import routable_strategies
from langchain_ttc.wiring import DEFAULT_STRATEGY, STRATEGIES, option_fields, strategy_spec

TRUST_HELP = "Run the PRM checkpoint's own modelling code (transformers; Qwen2.5-Math-PRM needs it)."


class ArgumentParser(argparse.ArgumentParser):
    """``argparse``'s parser whose errors are one line with a pointer to ``--help`` (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message> (see '<prog> --help')`` on stderr and exit with code 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


SOLVE_FLAGS = ("n", "temperature", "top_p", "max_tokens", "seed", "system_prompt", "answers")
"""Strategy options ``ttc solve`` sets with flags of its own (the rest come from the catalog's configs)."""


SYSTEM_PROMPT_HELP = (
    "A system message put before the problem, or a preset: "
    + ", ".join(f"preset:{name}" for name in SYSTEM_PROMPTS)
    + " (preset:search-and-learn is the study's prompt)."
)


ANSWERS_HELP = (
    "The answer key votes read and compare answers with: "
    + ", ".join(ANSWER_KEY_NAMES)
    + " (or multiple-choice:<LETTERS>). Default: math (the last \\boxed{}, by equivalence); reference-math reads "
    "answers as search-and-learn does (its parser's fallbacks, grouped by canonical form)."
)


def _field_choices(name: str) -> list[str]:
    """The values a Literal-typed strategy option takes (from the configs in the catalog)."""
    return [str(c) for c in option_fields()[name][1] or ()]


def add_strategy_options(parser: argparse.ArgumentParser, *, skip: tuple[str, ...]) -> list[str]:
    """One flag per option of any registered strategy (``--beam-width``, ``--critic``, ...); returns their names.

    Each flag defaults to ``None``: the chosen strategy's own default applies unless it is given.
    """
    names = []
    for name, (kind, choices, help_text) in option_fields().items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=kind, choices=choices, default=None, help=help_text)
        names.append(name)
    return names


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The policy and PRM flags; each one left out keeps the environment's or config file's setting.

    See :mod:`langchain_ttc.engines.settings` (``TTC_POLICY_*``, ``TTC_PRM_*``, ``TTC_CONFIG``).
    """
    parser.add_argument(
        "--policy",
        help="Policy: a directory, a hub id, arith:small|large, smollm2, or a server URL. "
        "Default: TTC_POLICY_URL / TTC_POLICY_MODEL, else arith:small.",
    )
    parser.add_argument(
        "--prm", help="PRM: a directory, a hub id, arith:prm, or a server URL. Default: TTC_PRM_*, else arith:prm."
    )
    parser.add_argument(
        "--backend",
        default=None,
        choices=BACKENDS,
        help="Engine of both: transformers, vllm (in process), openai (a vLLM server; --policy/--prm are URLs). "
        "Default: TTC_POLICY_BACKEND / TTC_PRM_BACKEND, else openai for a URL and transformers otherwise.",
    )
    parser.add_argument(
        "--prm-protocol", default=None, choices=PRM_PROTOCOLS, help="How the PRM reads steps. Default: math_shepherd."
    )
    parser.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    parser.add_argument(
        "--config", type=Path, default=None, help="A TOML config file with [policy] and [prm] (default: TTC_CONFIG)."
    )


def engine_settings(args: argparse.Namespace) -> EngineSettings:
    """The policy's and PRM's settings: the flags given, over the environment, over the config file.

    A ``--policy``/``--prm`` that is an http(s) URL names a server; anything else a model to load.
    """
    sections: dict[str, dict[str, Any]] = {"policy": {}, "prm": {}}
    origins: dict[str, str] = {}
    for section in sections:
        given = getattr(args, section)
        flag = f"--{section}"
        if given is not None:
            is_url = given.startswith(("http://", "https://"))
            sections[section].update({"url": given, "model": None} if is_url else {"model": given, "url": None})
            origins.update({f"{section}.url": flag, f"{section}.model": flag})
        if args.backend is not None:
            sections[section]["backend"] = args.backend
            origins[f"{section}.backend"] = "--backend"
    if args.prm_protocol is not None:
        sections["prm"]["protocol"] = args.prm_protocol
        origins["prm.protocol"] = "--prm-protocol"
    if args.trust_remote_code:
        sections["prm"]["trust_remote_code"] = True
    return load_engine_settings(policy=sections["policy"], prm=sections["prm"], config=args.config, origins=origins)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ttc``."""
    parser = ArgumentParser(prog="ttc", description="Test-time compute scaling for LangChain and LangGraph.")
    commands = parser.add_subparsers(dest="command", required=True)
    solve = commands.add_parser("solve", help="Solve one problem with a test-time compute strategy.")
    solve.add_argument("problem", help="The problem text.")
    solve.add_argument("--strategy", default=DEFAULT_STRATEGY, choices=sorted(STRATEGIES), help="Default: %(default)s.")
    solve.add_argument(
        "--n", type=_positive_int, default=8, help="Number of samples (the budget). Default: %(default)s."
    )
    add_engine_options(solve)
    solve.add_argument("--temperature", type=float, default=0.8, help="Default: %(default)s.")
    solve.add_argument("--top-p", type=float, default=1.0, help="Default: %(default)s.")
    solve.add_argument("--max-tokens", type=_positive_int, default=2048, help="Default: %(default)s.")
    solve.add_argument("--seed", type=int, default=None, help="Seed for reproducible sampling.")
    solve.add_argument("--system-prompt", default=None, help=SYSTEM_PROMPT_HELP)
    solve.add_argument("--answers", default=None, help=ANSWERS_HELP)
    solve.add_argument("--json", action="store_true", help="Print the whole result as JSON.")
    solve.add_argument(
        "--tree",
        type=Path,
        default=None,
        help="Write the search tree as an HTML page (this path) and a PNG beside it (step searches, self_refine).",
    )
    solve.set_defaults(strategy_options=add_strategy_options(solve, skip=SOLVE_FLAGS))

    evaluate = commands.add_parser("eval", help="Accuracy against budget on a dataset, for one or more strategies.")
    evaluate.add_argument("--dataset", required=True, help="'arith', a .jsonl file (MATH-500, GSM8K), or a hub id.")
    evaluate.add_argument(
        "--strategy",
        nargs="+",
        default=sample_strategies(),
        choices=sorted(STRATEGIES),
    )
    evaluate.add_argument("--n-max", type=_positive_int, default=16, help="Largest budget (a power of two).")
    add_engine_options(evaluate)
    evaluate.add_argument("--aggregation", default="last", choices=AGGREGATIONS)
    evaluate.add_argument("--temperature", type=float, default=0.8)
    evaluate.add_argument("--max-tokens", type=_positive_int, default=2048)
    evaluate.add_argument("--beam-width", type=_positive_int, default=4)
    evaluate.add_argument(
        "--budgets", type=_positive_int, nargs="+", default=None,
        help="Budgets the searches and the router run at (default: every power of two up to --n-max).",
    )  # fmt: skip
    evaluate.add_argument("--limit", type=_positive_int, default=None, help="Evaluate the first LIMIT problems.")
    evaluate.add_argument("--count", type=_positive_int, default=100, help="arith: problems when no --limit.")
    evaluate.add_argument("--difficulty", default="1-8", help="arith: steps, e.g. 3 or 1-8.")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--system-prompt", default=None, help=SYSTEM_PROMPT_HELP)
    evaluate.add_argument("--answers", default="math", help=ANSWERS_HELP)
    evaluate.add_argument("--concurrency", type=_positive_int, default=4, help="Problems in flight at once.")
    evaluate.add_argument(
        "--output", type=Path, default=None, help="JSONL results (default: ttc_eval/<dataset>.jsonl)."
    )

    serve = commands.add_parser(
        "serve",
        help="Serve the strategies behind an OpenAI-compatible API (model: '<strategy>[:<n>]').",
        description="An OpenAI-compatible HTTP server: /v1/chat/completions runs the strategy its model names "
        "(weighted_best_of_n:16, beam_search:16, compute_optimal:16, ...) on the configured policy and PRM. "
        "Every flag left out keeps its TTC_SERVE_* / TTC_POLICY_* / TTC_PRM_* variable or config-file setting.",
    )
    serve.add_argument("--host", default=None, help="Address to listen on. Default: TTC_SERVE_HOST, else 127.0.0.1.")
    serve.add_argument("--port", type=int, default=None, help="Port. Default: TTC_SERVE_PORT, else 8000.")
    serve.add_argument(
        "--api-key", default=None, help="Bearer token clients must send. Default: TTC_SERVE_API_KEY, else none."
    )
    serve.add_argument(
        "--default-n", type=_positive_int, default=None, help="Budget of a bare strategy name (default 16)."
    )
    serve.add_argument("--max-n", type=_positive_int, default=None, help="Largest budget a request may ask (64).")
    serve.add_argument(
        "--max-tokens", type=_positive_int, default=None, help="Tokens per solution (per step); default: strategy's."
    )
    serve.add_argument(
        "--answers",
        default=None,
        help=ANSWERS_HELP + " Or TTC_SERVE_ANSWERS; a request's ttc_answers overrides it.",
    )
    add_engine_options(serve)

    calibrate = commands.add_parser(
        "calibrate", help="Calibrate a compute-optimal strategy table: candidates per difficulty bin and budget."
    )
    calibrate.add_argument("--dataset", default="arith", help="'arith', a .jsonl file, or a hub id.")
    calibrate.add_argument("--budgets", type=_positive_int, nargs="+", default=[4, 16, 64])
    calibrate.add_argument("--strategies", nargs="+", default=routable_strategies(), choices=routable_strategies())
    calibrate.add_argument("--beam-width", type=_positive_int, default=4, help="Step-level search candidates: M.")
    calibrate.add_argument("--max-revisions", type=int, default=3, help="Self-refinement candidates: revisions.")
    calibrate.add_argument(
        "--critic", default="prm", choices=_field_choices("critic"), help="Self-refinement candidates: the critic."
    )
    calibrate.add_argument(
        "--from-records", type=Path, default=None, help="Refit from records a previous run wrote (no models run)."
    )
    calibrate.add_argument("--pilots", type=_positive_int, default=4, help="Pilot samples (count against budgets).")
    calibrate.add_argument("--estimator", default="prm_score", choices=sorted(ESTIMATORS))
    calibrate.add_argument("--bins", type=_positive_int, default=4, help="Difficulty bins (quantiles).")
    calibrate.add_argument("--folds", type=_positive_int, default=2, help="Held-out folds for the accuracy estimate.")
    for flag, field, kind in (("--max-budget", "max_budget", int), ("--tolerance", "tolerance", float)):  # the router
        calibrate.add_argument(flag, type=kind, default=None, help=BudgetChoice.model_fields[field].description)
    add_engine_options(calibrate)
    calibrate.add_argument("--aggregation", default="last", choices=AGGREGATIONS)
    calibrate.add_argument("--temperature", type=float, default=0.8)
    calibrate.add_argument("--max-tokens", type=_positive_int, default=2048)
    calibrate.add_argument("--limit", type=_positive_int, default=None)
    calibrate.add_argument("--count", type=_positive_int, default=120, help="arith: problems when no --limit.")
    calibrate.add_argument("--difficulty", default="1-8", help="arith: steps, e.g. 1-8.")
    calibrate.add_argument("--seed", type=int, default=9000, help="Dataset and sampling seed (disjoint from eval's).")
    calibrate.add_argument("--concurrency", type=_positive_int, default=8)
    calibrate.add_argument("--output", type=Path, required=True, help="The table to write (JSON).")
    calibrate.add_argument("--records", type=Path, default=None, help="Per-problem records (default: next to it).")
    calibrate.add_argument("--plot", type=Path, default=None, help="Accuracy per bin plot (default: next to it).")
    return parser


def _refine_line(event: dict[str, Any]) -> str:
    where = f"chain {event['chain']}, revision {event['revision']}"
    if event["type"] == "ttc.draft":
        return f"draft ({where}): answer {event['answer']}, {event['tokens']} tokens"
    flagged = "no error" if event["step"] is None else f"step {event['step'] + 1} flagged"
    return f"critique ({where}): {flagged}"


def _routing_line(routing: dict[str, Any]) -> str:
    return (
        f"routed: difficulty {routing['difficulty']:.3f} ({routing['estimator']}, {routing['pilots']} pilots) -> "
        f"bin {routing['bin']!r} -> {routing['strategy']} {routing['options']} at budget {routing['budget']}"
    )


def _format_table(result: TTCResult) -> str:
    lines = [f"answer: {result.answer}", "", "  #  answer      score   finish  tokens"]
    if "routing" in result.metadata:
        lines.insert(1, _routing_line(result.metadata["routing"]))
    if "drafts" in result.metadata:
        lines[2] = "  #  answer      score   finish  tokens  chain  revision"
    for index, candidate in enumerate(result.candidates):
        marker = "*" if index == result.chosen_index else " "
        score = "" if candidate.score is None else f"{candidate.score:.3f}"
        answer = (candidate.answer or "-")[:10]
        line = f"{marker}{index:>2}  {answer:<10}  {score:>6}  {candidate.finish_reason:<6}  {candidate.num_tokens:>6}"
        drafts = result.metadata.get("drafts", [])
        if index < len(drafts):
            line += f"  {drafts[index]['chain']:>5}  {drafts[index]['revision']:>8}"
        lines.append(line)
    u = result.usage
    lines += [
        "",
        f"usage: {u.policy_calls} policy call(s), {u.prompt_tokens} prompt + {u.completion_tokens} generated tokens, "
        f"{u.prm_calls} PRM call(s), {u.prm_tokens} PRM tokens ({u.prm_cached_tokens} cached), {u.judge_calls} "
        f"judge call(s), {u.judge_tokens} judge tokens ({u.judge_fallbacks} unreadable), {u.wall_time_s:.2f} s",
    ]
    return "\n".join(lines)


def _iteration_line(event: dict[str, Any]) -> str:
    best = "-" if event["best_score"] is None else f"{event['best_score']:.3f}"
    return (
        f"iteration {event['iteration'] + 1}: {event['active']} active, {event['finished']} finished, "
        f"best score {best}, {event['tokens']} tokens"
    )


def _warn(command: str, message: str) -> None:
    """A one-line warning on stderr: ``ttc <command>: warning: <message>``."""
    print(f"ttc {command}: warning: {message}", file=sys.stderr)


@contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Show the warnings raised inside as one line each (``ttc <command>: warning: ...``), not file and source."""
    with warnings.catch_warnings():

        def show(message: Warning | str, *_: Any, **__: Any) -> None:
            _warn(command, str(message))

        warnings.showwarning = show
        yield


def _arith_policy(settings: EngineSettings) -> str | None:
    """The shipped Arith policy's name (``arith:small``) if that is the configured policy, else ``None``."""
    model = settings.policy.model
    return model if not settings.policy.on_server and model and model.startswith("arith:") else None


def _is_arith(problem: str) -> bool:
    from langchain_ttc.arith.problems import parse_expression

    try:
        parse_expression(problem)
    except ValueError:
        return False
    return True


def _arith_only(policy: str, what: str) -> str:
    return (
        f"the policy {policy} only knows the built-in Arith task ('Keep only the last digit after each "
        f"step. What is 3+4*3?'), and {what}; its answer will be meaningless: pass --policy (or set TTC_POLICY_MODEL "
        "/ TTC_POLICY_URL) for another model."
    )


def solve(args: argparse.Namespace) -> int:
    """Run ``ttc solve``; return the exit code. Every input (budget caps too) is checked before any model loads."""
    if not args.problem.strip():
        raise ValueError(f"problem={args.problem!r} is empty; pass the text of the problem.")
    spec = strategy_spec(args.strategy)
    if args.tree is not None:
        if "record_tree" not in spec.options() and spec.family != "refine":
            raise ValueError(
                f"--tree needs a strategy that searches step by step or refines drafts; --strategy {args.strategy} "
                "samples whole solutions (try beam_search, dvts, particle_filtering or self_refine)."
            )
        if "record_tree" in spec.options():
            args.record_tree = True
    given = {name: getattr(args, name) for name in (*SOLVE_FLAGS, *args.strategy_options)}
    options = {k: v for k, v in given.items() if k in spec.options() and v is not None}
    unused = sorted(k for k, v in given.items() if v is not None and k not in spec.options() and k not in SOLVE_FLAGS)
    if unused:
        raise ValueError(
            f"--strategy {args.strategy} has no option {', '.join('--' + k.replace('_', '-') for k in unused)}; "
            f"its options: {', '.join(spec.options())}."
        )
    if args.answers is not None:
        answer_key_named(args.answers, parameter="--answers", objects=False)
    config = validated(spec.config, **options)  # bad options and budgets over the limits fail before any weights load
    if "table" in options or spec.family == "routing":
        from langchain_ttc.strategies.routing.table import load_table

        load_table(options.get("table")).choices_at(args.n)
    needs_prm = spec.uses_prm(config)
    settings = engine_settings(args)
    settings.check(prm=needs_prm)  # local paths exist, before any weights load
    arith = _arith_policy(settings)
    if arith is not None and not _is_arith(args.problem):
        _warn("solve", _arith_only(arith, "this problem is not an Arith problem"))
    from tqdm import tqdm
    from transformers.utils import logging as hf_logging

    from langchain_ttc.cli.interrupts import in_background
    from langchain_ttc.wiring import create_strategy_graph

    hf_logging.disable_progress_bar()
    policy = settings.load_policy()
    prm = settings.load_prm() if needs_prm else None
    graph = create_strategy_graph(args.strategy, policy, prm, **options)
    progress: list[tqdm[Any]] = []  # a search's line per iteration, on stderr (a terminal or not)

    def search() -> dict[str, Any]:
        output: dict[str, Any] = {}
        for mode, chunk in graph.stream({"problem": args.problem}, stream_mode=["custom", "values"]):
            event = cast(dict[str, Any], chunk)
            if mode == "custom" and event.get("type") == "ttc.iteration":
                if not progress:
                    progress.append(tqdm(desc=_iteration_line(event), file=sys.stderr, bar_format="{desc} [{elapsed}]"))
                else:
                    progress[0].set_description_str(_iteration_line(event))
            elif mode == "custom" and event.get("type") == "ttc.routed":
                print(_routing_line(event), file=sys.stderr)
            elif mode == "custom" and event.get("type") in ("ttc.draft", "ttc.critique"):
                print(_refine_line(event), file=sys.stderr)
            elif mode == "values":
                output = event
        return output

    try:
        output = in_background(search)  # Ctrl-C stops the wait at once, not after the model call in progress
    finally:
        for bar in progress:
            bar.close()
    result = TTCResult.model_validate(output["result"])
    print(result.model_dump_json(indent=2) if args.json else _format_table(result))
    if args.tree is not None:
        from langchain_ttc.integrations.tree_view import write_tree

        page, picture = write_tree(result, args.tree)  # without Graphviz: the page only, and a warning
        print(f"tree: {page}" + ("" if picture is None else f" and {picture}"), file=sys.stderr)
    return 0


def _reference(settings: ModelSettings) -> str:
    """What a record calls a model: its server URL or its reference."""
    return str(settings.url if settings.on_server else settings.model)


def _difficulty(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise ValueError(f"--difficulty={text!r} is not a number or a range; pass e.g. 3 or 1-8.") from None


def evaluate(args: argparse.Namespace) -> int:
    """Run ``ttc eval``; return the exit code. Every input is checked before any model loads."""
    from langchain_ttc.evaluation.datasets import load_problems
    from langchain_ttc.evaluation.report import plot, summary_markdown, write_summary_rows
    from langchain_ttc.evaluation.run import EvalConfig, read_records, run_evaluation

    difficulty = _difficulty(args.difficulty)
    settings = engine_settings(args)
    config = EvalConfig(
        dataset=args.dataset,
        strategies=list(dict.fromkeys(args.strategy)),
        n_max=args.n_max,
        policy=_reference(settings.policy),
        prm=_reference(settings.prm),
        aggregation=args.aggregation,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        beam_width=args.beam_width,
        seed=args.seed,
        system_prompt=args.system_prompt,
        budgets=args.budgets,
        answers=args.answers,
        dataset_options={"difficulty": list(difficulty), "count": args.count, "limit": args.limit},
    )
    config.check()  # the budget caps too
    settings.check(prm=config.needs_prm)
    problems = load_problems(args.dataset, limit=args.limit, difficulty=difficulty, seed=args.seed, count=args.count)
    output = args.output or Path("ttc_eval") / f"{Path(args.dataset).stem}.jsonl"
    read_records(output, config)  # another configuration's file is refused (a torn last line repaired) now
    args.kept = f"every finished problem is kept in {output}"
    arith = _arith_policy(settings)
    if arith is not None and problems and not _is_arith(problems[0].problem):
        _warn("eval", _arith_only(arith, f"--dataset {args.dataset} does not hold Arith problems"))

    from transformers.utils import logging as hf_logging

    from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM

    hf_logging.disable_progress_bar()
    policy = MicroBatchingPolicy(settings.load_policy())
    prm = MicroBatchingPRM(settings.load_prm()) if config.needs_prm else None
    records = run_evaluation(config, problems, output, policy=policy, prm=prm, concurrency=args.concurrency)
    title = f"{args.dataset}: {', '.join(config.strategies)} (policy {config.policy})"
    summary = summary_markdown(records, title=title)
    output.with_suffix(".md").write_text(summary)
    rows = write_summary_rows(records, output.with_suffix(".summary.json"))  # accuracy, mean samples and FLOPs
    plot(records, output.with_suffix(".png"), title=title)
    print(summary)
    print(f"results: {output}; summary: {output.with_suffix('.md')} and {rows}; plot: {output.with_suffix('.png')}")
    return 0


def calibrate_table(args: argparse.Namespace) -> int:
    """Run ``ttc calibrate`` (see :mod:`langchain_ttc.cli.calibrate`); return the exit code."""
    from langchain_ttc.cli.calibrate import calibrate_command

    settings = engine_settings(args)
    args.policy, args.prm = _reference(settings.policy), _reference(settings.prm)
    return calibrate_command(args, parse_difficulty=_difficulty, settings=settings)


def serve(args: argparse.Namespace) -> int:
    """Run ``ttc serve`` until interrupted; return the exit code. Settings are checked before any model loads."""
    from langchain_ttc.serving import load_serve_settings, run_server

    flags = {"host": "--host", "port": "--port", "api_key": "--api-key", "default_n": "--default-n",
             "max_n": "--max-n", "max_tokens": "--max-tokens", "answers": "--answers"}  # fmt: skip
    given = {key: getattr(args, key) for key in flags if getattr(args, key) is not None}
    serve_settings = load_serve_settings(overrides=given, config=args.config, origins=flags)
    engines = engine_settings(args)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    run_server(engines, serve_settings)
    return 0


def _interrupted(args: argparse.Namespace, error: KeyboardInterrupt) -> str:
    """The one line a command stopped by SIGINT prints."""
    from langchain_ttc.evaluation.records import RunInterrupted

    if isinstance(error, RunInterrupted):
        resume = "; run the same command again to resume" if error.path is not None else ""
        return f"ttc {args.command}: interrupted: {error}{resume}"
    if args.command == "solve":
        return "ttc solve: interrupted before an answer (nothing to keep)"
    return f"ttc {args.command}: interrupted" + (f"; {args.kept}" if args.kept else " before any problem ran")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ttc`` command.

    Exit codes: 0 done, 1 a model server failed, 2 bad input (one line on stderr, before any model
    loads), 130 stopped by SIGINT (one line saying what is kept; a second SIGINT exits at once). Run
    as the ``ttc`` program (``argv`` not given), a stopped command ends the process at once rather than
    wait for a model call still in progress in a thread.
    """
    from langchain_ttc.cli.interrupts import EXIT_INTERRUPTED, exit_now, interrupts

    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # keep stdout for results (--json)
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    commands = {"eval": evaluate, "calibrate": calibrate_table, "solve": solve, "serve": serve}
    # uvicorn handles SIGINT itself for ttc serve (a graceful shutdown)
    stopping = nullcontext() if args.command == "serve" else interrupts(args.command, kept=lambda: args.kept)
    args.kept = None  # what a command keeps once stopped, for the message of a second SIGINT
    with _one_line_warnings(args.command), stopping:
        try:
            return commands[args.command](args)
        except KeyboardInterrupt as interrupt:
            print(_interrupted(args, interrupt), file=sys.stderr)
            if argv is None:  # the ttc program: no waiting for a model call still in progress in a thread
                exit_now(EXIT_INTERRUPTED)
            return EXIT_INTERRUPTED
        except (ValueError, TypeError, FileNotFoundError) as error:
            print(f"ttc {args.command}: error: {error}", file=sys.stderr)
            return 2
        except ServerError as error:  # a model server died: say what was tried and what was kept
            print(f"ttc {args.command}: error: {error}", *getattr(error, "__notes__", []), sep="\n", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
