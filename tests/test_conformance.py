"""Conformance: each strategy graph against an independent restatement of the algorithm it implements.

The restatements (section 2) follow huggingface/search-and-learn (``src/sal/search/beam_search.py``,
``diverse_verifier_tree_search.py``, ``best_of_n.py``, ``src/sal/utils/score.py``) and its_hub's
``ParticleFiltering`` / ``ParticleGibbs`` (``its_hub/algorithms/particle_gibbs.py``) in plain Python,
with our documented differences (docs/differences.md): a truncated completion is never finished; a
step of only whitespace ends its beam; lookahead text is scored; the final pick is over the ``n``
best-scored finished beams, each once; DVTS keeps only the finished siblings of a subtree's last
expansion and ends a subtree whose chosen step states a ``\\boxed{}`` answer; ties in score go to the
earlier candidate; particles are weighted by the softmax of their score's logit over a temperature,
finished ones stay in the population, particle Gibbs gives a reference its final weight, and with
``stop_at`` (its_hub's stop token, drawn by hypothesis) a step holding the stop text finishes its
particle, its lookahead unscored; every draw samples from its own block of seeds (``seed + k`` for the
``k``-th sample of a request, as vLLM does).

**The restatements share no code with the package.** Sections 1 and 2 import nothing from
``langchain_ttc``: their own aggregation, ``\\boxed{}`` extraction, answer equivalence (exact
fractions: ``1/2``, ``0.5`` and ``\\frac{1}{2}`` are one answer), seed rule, resampling and vote.
``test_the_restatements_share_no_code_with_the_package`` checks it. Section 3 adapts the world to the
package's engine interfaces and compares.

The world (section 1) is a scripted policy whose step is a pure function of the partial solution and the
request's seed (``seed + k`` for the ``k``-th sample; greedy steps ignore it), and a PRM whose score is
a pure function of the prefix, drawn from three dyadic levels so that ties are frequent and exact. The
policy writes ``\\boxed{}`` inside steps (the DVTS answered rule fires; other searches go on), steps of
nothing but the delimiter, truncated steps, and equivalent answers written differently (``1/2``,
``0.5``, ``\\frac{1}{2}``; ``2`` and ``2.0``). Hypothesis draws worlds and settings (lookahead and
``stop_when_n_finished`` included); each comparison checks every policy call (partials, counts,
seeds, in order), the final candidates (text, finish reason and score, in order), the answer and the
chosen solution. Section 4 applies deliberate mutations to the package (monkeypatch) and shows that the
comparison catches each one.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import random
import re
import types
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# ---- 1. the world (plain Python: nothing from langchain_ttc) ----

DELIM = "\n\n"
PROBLEM = "What is the answer?"
ANSWERS = ("1/2", "0.5", "\\frac{1}{2}", "2", "2.0", "3")
LEVELS = (0.25, 0.5, 0.75)


def unit(*key: object) -> float:
    """A pure pseudo-random number in [0, 1) for ``key``."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class World:
    """A scripted world: the step a sample writes (from its partial solution and seed) and the score of a prefix."""

    def __init__(
        self,
        seed: int,
        *,
        steps: int,
        answers: tuple[str, ...],
        p_end: float,
        p_length: float,
        p_blank: float,
        p_boxed: float,
    ) -> None:
        self.seed, self.steps, self.answers = seed, steps, answers
        self.p_end, self.p_length, self.p_blank, self.p_boxed = p_end, p_length, p_blank, p_boxed

    def __repr__(self) -> str:
        return (
            f"World({self.seed}, steps={self.steps}, answers={self.answers}, p_end={self.p_end}, "
            f"p_length={self.p_length}, p_blank={self.p_blank}, p_boxed={self.p_boxed})"
        )

    def step(self, partial: str, sample_seed: int | None, *, to_the_end: bool) -> tuple[str, str]:
        """The step written after ``partial`` by the sample seeded ``sample_seed`` (``None``: greedy)."""
        rng = random.Random(f"{self.seed}|{partial}|{sample_seed}|{to_the_end}")
        roll = rng.random()
        answer = f"\\boxed{{{rng.choice(self.answers)}}}"
        if roll < self.p_length:
            return f"cut {rng.randrange(self.steps)}", "length"
        if to_the_end or roll < self.p_length + self.p_end:
            return f"so {answer}", "eos"
        roll -= self.p_length + self.p_end
        if roll < self.p_blank:
            return DELIM, "stop"
        if roll < self.p_blank + self.p_boxed:
            return f"say {answer}{DELIM}", "stop"  # an answer stated inside a step: the solution goes on
        return f"step {rng.randrange(self.steps)}{DELIM}", "stop"

    def score(self, steps: list[str]) -> list[float]:
        """One score per step: a level drawn from the prefix up to that step."""
        return [LEVELS[int(unit(self.seed, tuple(steps[: i + 1])) * len(LEVELS))] for i in range(len(steps))]


# ---- 2. the restatements (plain Python: nothing from langchain_ttc) ----

Call = list[tuple[str, int, int | None, bool]]
"""One policy call as recorded: per request, (partial, samples, first seed or None for greedy, to the end)."""


class Cand(NamedTuple):
    """A candidate solution: its text, how its last step ended, its aggregated score (None: unscored)."""

    text: str
    reason: str
    score: float | None


def ref_seed(seed: int, *label: str | int) -> int:
    """The first seed of the block a draw labelled ``label`` samples from (2**20 seeds per block)."""
    digest = hashlib.blake2b(repr((seed, *label)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % (1 << 40)) * (1 << 20)


def steps_of(text: str) -> list[str]:
    return [s.strip() for s in text.split(DELIM) if s.strip()]


def ref_aggregate(scores: list[float], how: str) -> float:
    rules: dict[str, Callable[[list[float]], float]] = {
        "last": lambda s: s[-1],
        "min": min,
        "prod": math.prod,
        "mean": lambda s: sum(s) / len(s),
    }
    return rules[how](scores)


def boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (braces matched), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    for index in range(start + len("\\boxed"), len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + len("\\boxed{") : index].strip()
    return None


def same_answer_key(answer: str) -> Fraction | str:
    """Equivalent answers share a key: the exact fraction of a number, else the text."""
    try:
        return Fraction(re.sub(r"\\frac\{(-?\d+)\}\{(\d+)\}", r"\1/\2", answer))
    except (ValueError, ZeroDivisionError):
        return answer


def score_of(world: World, text: str, look: str, reason: str, how: str) -> float | None:
    """The PRM's aggregated score of a candidate (its lookahead text included); None when truncated or empty."""
    if reason == "length" or not steps_of(text):
        return None
    return ref_aggregate(world.score(steps_of(text + look)), how)


def ranked(cands: list[Cand]) -> list[Cand]:
    """Best score first, unscored last, ties in order."""
    order = sorted(range(len(cands)), key=lambda i: (cands[i].score is None, -(cands[i].score or 0.0), i))
    return [cands[i] for i in order]


def vote(cands: list[Cand], rule: str) -> Cand | None:
    """The final pick among candidates: ``best`` score, ``weighted`` vote, or ``majority`` vote."""
    eligible = [(i, c) for i, c in enumerate(cands) if c.reason != "length" and boxed(c.text) is not None]
    if rule != "majority":
        eligible = [(i, c) for i, c in eligible if c.score is not None]
    if not eligible:
        return None
    if rule == "best":
        return max(eligible, key=lambda ic: (ic[1].score, -ic[0]))[1]
    groups: dict[Fraction | str, list[tuple[int, Cand]]] = {}
    for i, c in eligible:
        groups.setdefault(same_answer_key(boxed(c.text) or ""), []).append((i, c))
    weights = {k: sum([1.0 if rule == "majority" else (c.score or 0.0) for _, c in g]) for k, g in groups.items()}
    best = None
    for key in groups:  # in order of first appearance; a tie keeps the earlier answer
        if best is None or weights[key] > weights[best]:
            best = key
    assert best is not None
    members = groups[best]
    return members[0][1] if rule == "majority" else max(members, key=lambda ic: (ic[1].score, -ic[0]))[1]


class Outcome(NamedTuple):
    calls: list[Call]
    candidates: list[Cand]
    chosen: Cand | None


def draw(
    world: World, calls: list[Call], parents: list[tuple[str, int]], base: int, last: bool
) -> list[tuple[str, str]]:
    """One batched call: parent ``j`` writes its count of samples with seeds from ``base`` + the counts before it.

    Returns the children in the reference's order (its list of beams repeated: one sample of each parent
    in turn), each as (text, finish reason); a step of only whitespace ends its beam.
    """
    call: Call = []
    samples: list[list[tuple[str, str]]] = []
    offset = 0
    for text, count in parents:
        call.append((text, count, base + offset, last))
        samples.append([world.step(text, base + offset + k, to_the_end=last) for k in range(count)])
        offset += count
    calls.append(call)
    children = []
    for k in range(max((count for _, count in parents), default=0)):
        for (text, _), own in zip(parents, samples, strict=True):
            if k < len(own):
                step, reason = own[k]
                children.append((text + step, "eos" if reason == "stop" and not step.strip() else reason))
    return children


def roll_out(world: World, calls: list[Call], children: list[tuple[str, str]], steps: int) -> list[str]:
    """Lookahead: each active child rolled ``steps`` more greedy steps (one call per step); the rolled text."""
    looks = [""] * len(children)
    rolling = [i for i, (_, reason) in enumerate(children) if reason == "stop"]
    for _ in range(steps):
        if not rolling:
            break
        calls.append([(children[i][0] + looks[i], 1, None, False) for i in rolling])
        still = []
        for i in rolling:
            step, reason = world.step(children[i][0] + looks[i], None, to_the_end=False)
            looks[i] += step
            if reason == "stop":
                still.append(i)
        rolling = still
    return looks


def scored(
    world: World, calls: list[Call], children: list[tuple[str, str]], *, lookahead: int, last: bool, how: str
) -> list[Cand]:
    looks = roll_out(world, calls, children, lookahead) if lookahead and not last else [""] * len(children)
    return [Cand(t, r, score_of(world, t, look, r, how)) for (t, r), look in zip(children, looks, strict=True)]


def ref_beam_search(
    world: World,
    *,
    n: int,
    m: int,
    iterations: int,
    aggregation: str,
    filter_duplicates: bool,
    final: str,
    lookahead: int,
    stop_when_n_finished: bool,
    seed: int,
) -> Outcome:
    """search-and-learn's beam search: the active beams repeated up to ``n`` each iteration, the best ``n / m`` kept."""
    calls: list[Call] = []
    active, finished, truncated = [""], [], []
    for i in range(iterations):
        last = i == iterations - 1
        repeated = (list(range(len(active))) * (n // len(active) + 1))[:n]  # the active beams repeated up to n
        copies = [repeated.count(j) for j in range(len(active))]
        children = draw(world, calls, list(zip(active, copies, strict=True)), ref_seed(seed, "iteration", i), last)
        cands = scored(world, calls, children, lookahead=lookahead, last=last, how=aggregation)
        finished += [c for c in cands if c.reason == "eos"]
        truncated += [c for c in cands if c.reason == "length"]
        alive = [c for c in cands if c.reason == "stop"]
        if filter_duplicates:  # the first copy of each text
            unique: dict[str, Cand] = {}
            for c in alive:
                unique.setdefault(c.text, c)
            alive = list(unique.values())
        keep = {id(c) for c in ranked(alive)[: n // m]}
        active = [c.text for c in alive if id(c) in keep]  # survivors keep their order
        if not active or (stop_when_n_finished and len(finished) >= n):
            break
    pool = ranked(finished)[:n] + truncated
    return Outcome(calls, pool, vote(pool, final))


def ref_dvts(
    world: World, *, n: int, m: int, iterations: int, aggregation: str, final: str, lookahead: int, seed: int
) -> Outcome:
    """search-and-learn's DVTS: ``n / m`` subtrees, each extended by its best of ``m`` samples until it ends."""
    calls: list[Call] = []
    live = [(t, "") for t in range(n // m)]  # (subtree, its text) in subtree order
    finished, truncated = [], []
    for i in range(iterations):
        if not live:
            break
        last = i == iterations - 1
        children = draw(world, calls, [(text, m) for _, text in live], ref_seed(seed, "iteration", i), last)
        subtree = [live[j][0] for _ in range(m) for j in range(len(live))]
        cands = scored(world, calls, children, lookahead=lookahead, last=last, how=aggregation)
        # a step that states the answer ends the solution, as end of sequence does
        cands = [c._replace(reason="eos") if c.reason == "stop" and boxed(c.text) is not None else c for c in cands]
        best: dict[int, int] = {}  # per subtree, its best candidate that is not truncated (ties: the earlier)
        for k in sorted(range(len(cands)), key=lambda k: (cands[k].score is None, -(cands[k].score or 0.0), k)):
            if cands[k].reason != "length":
                best.setdefault(subtree[k], k)
        going_on = {t for t, k in best.items() if cands[k].reason == "stop"}
        finished += [c for k, c in enumerate(cands) if subtree[k] not in going_on and c.reason == "eos"]
        truncated += [c for k, c in enumerate(cands) if subtree[k] not in going_on and c.reason == "length"]
        live = [(t, cands[best[t]].text) for t in sorted(best) if t in going_on]
    pool = ranked(finished)[:n] + truncated
    return Outcome(calls, pool, vote(pool, final))


def ref_weights(scores: list[float | None], temperature: float) -> list[float]:
    """Puri et al. / its_hub: the softmax of the scores' logits over a temperature (clipped; None weighs 0)."""
    clipped = [None if s is None else min(max(s, 1e-7), 1 - 1e-7) for s in scores]
    logits = [None if c is None else math.log(c / (1 - c)) / temperature for c in clipped]
    known = [x for x in logits if x is not None]
    if not known:
        return [0.0] * len(scores)
    top = max(known)
    exps = [0.0 if x is None else math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def ref_resample(weights: list[float], k: int, rng: random.Random, method: str) -> list[int]:
    """``k`` draws with replacement: independent (multinomial) or evenly spaced from one offset (systematic)."""
    if method == "multinomial":
        return rng.choices(range(len(weights)), weights=weights, k=k)
    total, offset = sum(weights), rng.random() / k
    picks, index, cumulative = [], 0, weights[0] / total
    for j in range(k):
        while offset + j / k > cumulative and index < len(weights) - 1:  # the first index whose cumulative covers it
            index += 1
            cumulative += weights[index] / total
        picks.append(index)
    return picks


class Particle(NamedTuple):
    texts: tuple[str, ...]  # the partial solution after each of its steps
    reason: str
    score: float | None


def ref_stopped(
    children: list[tuple[str, str]], chains: list[tuple[str, ...]], looks: list[str], stop: str
) -> tuple[list[tuple[str, str]], list[str]]:
    """its_hub's stop rule: a child whose new step (its delimiter left out) holds ``stop`` is finished, unrolled."""
    out_children, out_looks = [], []
    for (text, reason), chain, look in zip(children, chains, looks, strict=True):
        step = text[len(chain[-2]) :] if len(chain) > 1 else text
        if reason == "stop" and stop in step.removesuffix(DELIM):
            reason, look = "eos", ""
        out_children.append((text, reason))
        out_looks.append(look)
    return out_children, out_looks


def ref_particles(
    world: World,
    *,
    n: int,
    rounds: int,
    refs: int,
    iterations: int,
    aggregation: str,
    temperature: float,
    method: str,
    lookahead: int,
    final: str,
    seed: int,
    stop: str | None = None,
) -> Outcome:
    """its_hub's particle filtering (``rounds=1``) and particle Gibbs, with the differences documented above.

    A sweep runs ``n / rounds`` particles (``refs`` of them the references after the first sweep). Each
    iteration every active particle writes one step; the population (new particles, finished ones, the
    references at their final weight) is resampled by weight; a drawn reference longer than the sweep so
    far comes back as its first steps and goes on. After a sweep the references are drawn from its
    finished particles and references; the last sweep's population is picked from. When every particle
    of an iteration is truncated or unscored, the search ends with what that sweep has finished. With
    ``stop`` (its_hub's stop token), a child whose step (its delimiter left out) holds it is finished, and
    the lookahead rolled past it is not scored.
    """
    calls: list[Call] = []
    per = n // rounds
    references: list[Particle] = []
    truncated: list[Cand] = []
    finished: list[Particle] = []
    ended = False  # every particle of an iteration truncated or unscored: the search ends with its sweep
    for sweep in range(rounds):
        label: tuple[str | int, ...] = ("round", sweep) if sweep else ()
        free = per - (refs if sweep else 0)
        frontier: list[tuple[str, ...]] = [()]
        finished = []
        for i in range(iterations):
            last = i == iterations - 1
            parents = [("", free)] if i == 0 else [(texts[-1], 1) for texts in frontier]
            children = draw(world, calls, parents, ref_seed(seed, "iteration", i, *label), last)
            chains = (
                [(t,) for t, _ in children] if i == 0 else [(*p, c[0]) for p, c in zip(frontier, children, strict=True)]
            )
            looks = roll_out(world, calls, children, lookahead) if lookahead and not last else [""] * len(children)
            if stop is not None:
                children, looks = ref_stopped(children, chains, looks, stop)
            cands = [
                Cand(t, r, score_of(world, t, look, r, aggregation))
                for (t, r), look in zip(children, looks, strict=True)
            ]
            truncated += [c for c in cands if c.reason == "length"]
            population = [Particle(ch, c.reason, c.score) for ch, c in zip(chains, cands, strict=True)]
            population += finished + references
            weights = ref_weights([None if p.reason == "length" else p.score for p in population], temperature)
            if not any(weights):
                ended, references = True, []
                break
            rng = random.Random(ref_seed(seed, "resample", i, *label))
            drawn = [population[j] for j in ref_resample(weights, free, rng, method)]
            drawn = [Particle(p.texts[: i + 1], "stop", None) if len(p.texts) > i + 1 else p for p in drawn]
            frontier = [p.texts for p in drawn if p.reason == "stop"]
            finished = [p for p in drawn if p.reason == "eos"]
            if not frontier:
                break
        finished = finished + references
        if ended or sweep == rounds - 1:
            break
        weights = ref_weights([p.score for p in finished], temperature)
        rng = random.Random(ref_seed(seed, "references", sweep + 1))
        references = [finished[j] for j in ref_resample(weights, refs, rng, "multinomial")]
    pool = ranked([Cand(p.texts[-1], p.reason, p.score) for p in finished])[:n] + truncated
    return Outcome(calls, pool, vote(pool, final))


def ref_sampling(world: World, *, n: int, aggregation: str, rule: str, seed: int) -> Outcome:
    """Best-of-N, weighted best-of-N, majority vote: ``n`` whole solutions from one request, then the pick."""
    base = ref_seed(seed, "samples")
    calls: list[Call] = [[("", n, base, True)]]
    drawn = [world.step("", base + k, to_the_end=True) for k in range(n)]
    cands = [
        Cand(t, r, ref_aggregate(world.score(steps_of(t)), aggregation) if steps_of(t) else None) for t, r in drawn
    ]
    return Outcome(calls, cands, vote(cands, rule))


RESTATEMENTS: tuple[object, ...] = (
    unit,
    World,
    ref_seed,
    steps_of,
    ref_aggregate,
    boxed,
    same_answer_key,
    score_of,
    ranked,
    vote,
    draw,
    roll_out,
    scored,
    ref_beam_search,
    ref_dvts,
    ref_weights,
    ref_resample,
    ref_stopped,
    ref_particles,
    ref_sampling,
    Cand,
    Particle,
    Outcome,
)


# ---- 3. the package on the same worlds ----

from langchain_ttc.core.types import (  # noqa: E402 - the restatements above must not see the package
    Completion,
    GenerationRequest,
    GenerationResult,
    ScoreRequest,
    StepScores,
)
from langchain_ttc.engines.base import PolicyEngine, PRMEngine  # noqa: E402
from langchain_ttc.strategies.sampling.best_of_n import (  # noqa: E402
    create_best_of_n_graph,
    create_weighted_best_of_n_graph,
)
from langchain_ttc.strategies.sampling.majority_vote import create_majority_vote_graph  # noqa: E402
from langchain_ttc.strategies.search.beam_search import create_beam_search_graph  # noqa: E402
from langchain_ttc.strategies.search.dvts import create_dvts_graph  # noqa: E402
from langchain_ttc.strategies.search.particle_filtering import create_particle_filtering_graph  # noqa: E402


class WorldPolicy(PolicyEngine):
    """The world's policy as an engine: the ``k``-th sample of a request is seeded ``seed + k`` (greedy ignores it)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.calls: list[Call] = []

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.calls.append([(r.partial, r.n, r.seed, not r.stop) for r in requests])
        results = []
        for r in requests:
            assert r.temperature == 0 or r.seed is not None, "a sampled request without a seed"
            completions = []
            for k in range(r.n):
                seed = None if r.temperature == 0 else (r.seed or 0) + k
                text, reason = self.world.step(r.partial, seed, to_the_end=not r.stop)
                completions.append(Completion(text=text, num_tokens=len(text), finish_reason=reason))  # type: ignore[arg-type]
            results.append(GenerationResult(completions=completions, prompt_tokens=1))
        return results


class WorldPRM(PRMEngine):
    def __init__(self, world: World) -> None:
        self.world = world

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        return [StepScores(scores=self.world.score(r.steps), num_tokens=1) for r in requests]


def candidates_of(output: dict[str, Any]) -> list[Cand]:
    return [Cand(c["text"], c["finish_reason"], c["score"]) for c in output["result"]["candidates"]]


def compare(policy: WorldPolicy, output: dict[str, Any], expected: Outcome) -> None:
    """The graph did what the restatement did: the same calls, the same candidates, the same pick."""
    assert policy.calls == expected.calls, "the policy calls differ"
    assert candidates_of(output) == expected.candidates, "the final candidates differ"
    chosen = expected.chosen
    assert output["answer"] == (None if chosen is None else boxed(chosen.text)), "the answer differs"
    assert output["result"]["solution"] == (None if chosen is None else chosen.text), "the chosen solution differs"


def check_beam_search(
    world: World,
    *,
    n: int,
    m: int,
    iterations: int,
    aggregation: str,
    filter_duplicates: bool,
    final: str,
    lookahead: int,
    stop_when_n_finished: bool,
    seed: int,
) -> None:
    policy = WorldPolicy(world)
    graph = create_beam_search_graph(
        policy,
        WorldPRM(world),
        n=n,
        beam_width=m,
        max_iterations=iterations,
        aggregation=aggregation,
        filter_duplicates=filter_duplicates,
        selection=final,
        lookahead=lookahead,
        stop_when_n_finished=stop_when_n_finished,
        seed=seed,
    )
    expected = ref_beam_search(
        world,
        n=n,
        m=m,
        iterations=iterations,
        aggregation=aggregation,
        filter_duplicates=filter_duplicates,
        final=final,
        lookahead=lookahead,
        stop_when_n_finished=stop_when_n_finished,
        seed=seed,
    )
    compare(policy, graph.invoke({"problem": PROBLEM}), expected)
    assert all(sum(r[1] for r in call) == n for call in policy.calls if call[0][2] is not None)  # n samples a step


def check_dvts(
    world: World, *, n: int, m: int, iterations: int, aggregation: str, final: str, lookahead: int, seed: int
) -> None:
    policy = WorldPolicy(world)
    graph = create_dvts_graph(
        policy,
        WorldPRM(world),
        n=n,
        beam_width=m,
        max_iterations=iterations,
        aggregation=aggregation,
        selection=final,
        lookahead=lookahead,
        seed=seed,
    )
    expected = ref_dvts(
        world, n=n, m=m, iterations=iterations, aggregation=aggregation, final=final, lookahead=lookahead, seed=seed
    )
    compare(policy, graph.invoke({"problem": PROBLEM}), expected)


def check_particles(
    world: World,
    *,
    n: int,
    rounds: int,
    refs: int,
    iterations: int,
    aggregation: str,
    temperature: float,
    method: str,
    lookahead: int,
    final: str,
    seed: int,
    stop: str | None = None,
) -> None:
    policy = WorldPolicy(world)
    graph = create_particle_filtering_graph(
        policy,
        WorldPRM(world),
        n=n,
        rounds=rounds,
        reference_particles=refs,
        max_iterations=iterations,
        aggregation=aggregation,
        resampling_temperature=temperature,
        resampling=method,
        lookahead=lookahead,
        selection=final,
        seed=seed,
        stop_at=stop,
    )
    expected = ref_particles(
        world,
        n=n,
        rounds=rounds,
        refs=refs,
        iterations=iterations,
        aggregation=aggregation,
        temperature=temperature,
        method=method,
        lookahead=lookahead,
        final=final,
        seed=seed,
        stop=stop,
    )
    compare(policy, graph.invoke({"problem": PROBLEM}), expected)


SAMPLING: dict[str, tuple[Callable[..., Any], str]] = {
    "majority_vote": (create_majority_vote_graph, "majority"),
    "best_of_n": (create_best_of_n_graph, "best"),
    "weighted_best_of_n": (create_weighted_best_of_n_graph, "weighted"),
}


def check_sampling(world: World, *, strategy: str, n: int, aggregation: str, seed: int) -> None:
    factory, rule = SAMPLING[strategy]
    policy = WorldPolicy(world)
    if rule == "majority":
        graph = factory(policy, n=n, seed=seed)
    else:
        graph = factory(policy, WorldPRM(world), n=n, aggregation=aggregation, seed=seed)
    output = graph.invoke({"problem": PROBLEM})
    expected = ref_sampling(world, n=n, aggregation=aggregation, rule=rule, seed=seed)
    assert policy.calls == expected.calls, "the policy calls differ"
    chosen = expected.chosen
    assert output["answer"] == (None if chosen is None else boxed(chosen.text)), "the answer differs"
    assert output["result"]["solution"] == (None if chosen is None else chosen.text), "the chosen solution differs"


# The options every case is drawn from (hypothesis below; a seeded generator for the mutations).
OPTIONS: dict[str, tuple[Any, ...]] = {
    "steps": (1, 2, 4),
    "p_end": (0.05, 0.2, 0.5),
    "p_length": (0.0, 0.1, 0.3),
    "p_blank": (0.0, 0.05, 0.15),
    "p_boxed": (0.0, 0.1, 0.3),
    "width": ((4, 1), (4, 2), (4, 4), (8, 2), (8, 4), (12, 3), (16, 4)),
    "iterations": (1, 2, 3, 4, 6),
    "aggregation": ("last", "min", "prod", "mean"),
    "final": ("best", "weighted"),
    "lookahead": (0, 0, 1, 2),
    "temperature": (0.2, 1.0, 3.0),
    "method": ("multinomial", "systematic"),
    "stop": (None, "\\boxed"),
}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

worlds = st.builds(
    World,
    st.integers(0, 10**6),
    steps=st.sampled_from(OPTIONS["steps"]),
    answers=st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=4, unique=True).map(tuple),
    p_end=st.sampled_from(OPTIONS["p_end"]),
    p_length=st.sampled_from(OPTIONS["p_length"]),
    p_blank=st.sampled_from(OPTIONS["p_blank"]),
    p_boxed=st.sampled_from(OPTIONS["p_boxed"]),
)


def option(name: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(OPTIONS[name])


@SETTINGS
@given(
    world=worlds,
    width=option("width"),
    iterations=option("iterations"),
    aggregation=option("aggregation"),
    filter_duplicates=st.booleans(),
    final=option("final"),
    lookahead=option("lookahead"),
    stop_when_n_finished=st.booleans(),
    seed=st.integers(0, 10**6),
)
def test_beam_search_conforms(
    world: World,
    width: tuple[int, int],
    iterations: int,
    aggregation: str,
    filter_duplicates: bool,
    final: str,
    lookahead: int,
    stop_when_n_finished: bool,
    seed: int,
) -> None:
    check_beam_search(
        world,
        n=width[0],
        m=width[1],
        iterations=iterations,
        aggregation=aggregation,
        filter_duplicates=filter_duplicates,
        final=final,
        lookahead=lookahead,
        stop_when_n_finished=stop_when_n_finished,
        seed=seed,
    )


@SETTINGS
@given(
    world=worlds,
    width=option("width"),
    iterations=option("iterations"),
    aggregation=option("aggregation"),
    final=option("final"),
    lookahead=option("lookahead"),
    seed=st.integers(0, 10**6),
)
def test_dvts_conforms(
    world: World, width: tuple[int, int], iterations: int, aggregation: str, final: str, lookahead: int, seed: int
) -> None:
    check_dvts(
        world,
        n=width[0],
        m=width[1],
        iterations=iterations,
        aggregation=aggregation,
        final=final,
        lookahead=lookahead,
        seed=seed,
    )


@SETTINGS
@given(
    world=worlds,
    n=st.integers(1, 12),
    iterations=option("iterations"),
    aggregation=option("aggregation"),
    temperature=option("temperature"),
    method=option("method"),
    lookahead=option("lookahead"),
    final=option("final"),
    seed=st.integers(0, 10**6),
    stop=option("stop"),
)
def test_particle_filtering_conforms(
    world: World,
    n: int,
    iterations: int,
    aggregation: str,
    temperature: float,
    method: str,
    lookahead: int,
    final: str,
    seed: int,
    stop: str | None,
) -> None:
    check_particles(
        world,
        n=n,
        rounds=1,
        refs=1,
        iterations=iterations,
        aggregation=aggregation,
        temperature=temperature,
        method=method,
        lookahead=lookahead,
        final=final,
        seed=seed,
        stop=stop,
    )


@SETTINGS
@given(
    world=worlds,
    rounds=st.integers(2, 3),
    per_round=st.integers(2, 5),
    refs=st.integers(1, 2),
    iterations=option("iterations"),
    aggregation=option("aggregation"),
    temperature=option("temperature"),
    method=option("method"),
    lookahead=option("lookahead"),
    final=option("final"),
    seed=st.integers(0, 10**6),
    stop=option("stop"),
)
def test_particle_gibbs_conforms(
    world: World,
    rounds: int,
    per_round: int,
    refs: int,
    iterations: int,
    aggregation: str,
    temperature: float,
    method: str,
    lookahead: int,
    final: str,
    seed: int,
    stop: str | None,
) -> None:
    check_particles(
        world,
        n=rounds * per_round,
        rounds=rounds,
        refs=min(refs, per_round - 1),
        iterations=iterations,
        aggregation=aggregation,
        temperature=temperature,
        method=method,
        lookahead=lookahead,
        final=final,
        seed=seed,
        stop=stop,
    )


@SETTINGS
@given(
    world=worlds,
    n=st.integers(1, 16),
    aggregation=option("aggregation"),
    strategy=st.sampled_from(sorted(SAMPLING)),
    seed=st.integers(0, 10**6),
)
def test_sampling_strategies_conform(world: World, n: int, aggregation: str, strategy: str, seed: int) -> None:
    check_sampling(world, strategy=strategy, n=n, aggregation=aggregation, seed=seed)


def test_the_restatements_share_no_code_with_the_package() -> None:
    """Every global a restatement reads is plain Python or another restatement, never the package."""

    def code_objects(obj: object) -> Iterator[types.CodeType]:
        functions = [v for v in vars(obj).values() if inspect.isfunction(v)] if inspect.isclass(obj) else [obj]
        stack = [f.__code__ for f in functions if inspect.isfunction(f)]
        while stack:
            code = stack.pop()
            yield code
            stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]

    for obj in RESTATEMENTS:
        for code in code_objects(obj):
            assert "langchain_ttc" not in code.co_names, f"{obj!r} imports the package"
            for name in code.co_names:
                value = globals().get(name)
                origin = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", "") or ""
                assert not origin.startswith("langchain_ttc"), f"{obj!r} reads {name} from {origin}"


# ---- 4. mutations: each deliberate change of the package makes the comparison fail ----


def random_case(strategy: str, rng: random.Random) -> tuple[Callable[..., None], World, dict[str, Any]]:
    """A case drawn from OPTIONS with ``rng``: the check to run, its world and its settings."""

    def pick(name: str) -> Any:
        return rng.choice(OPTIONS[name])

    world = World(
        rng.randrange(10**6),
        steps=pick("steps"),
        answers=tuple(rng.sample(ANSWERS, rng.randint(1, 4))),
        p_end=pick("p_end"),
        p_length=pick("p_length"),
        p_blank=pick("p_blank"),
        p_boxed=pick("p_boxed"),
    )
    common = {
        "iterations": rng.choice((3, 4, 6)),
        "aggregation": pick("aggregation"),
        "final": pick("final"),
        "lookahead": pick("lookahead"),
        "seed": rng.randrange(10**6),
    }
    if strategy in ("beam_search", "dvts"):
        n, m = pick("width")
        if strategy == "dvts":
            return check_dvts, world, {"n": n, "m": m, **common}
        extra = {"filter_duplicates": rng.random() < 0.5, "stop_when_n_finished": rng.random() < 0.3}
        return check_beam_search, world, {"n": n, "m": m, **common, **extra}
    if strategy in ("particle_filtering", "particle_gibbs"):
        rounds = 1 if strategy == "particle_filtering" else rng.randint(2, 3)
        per = rng.randint(2, 6)
        return (
            check_particles,
            world,
            {
                "n": rounds * per,
                "rounds": rounds,
                "refs": rng.randint(1, per - 1),
                "temperature": pick("temperature"),
                "method": pick("method"),
                "stop": "\\boxed" if common["seed"] % 2 else None,  # no draw of its own: the cases stay the same
                **common,
            },
        )
    return (
        check_sampling,
        world,
        {"strategy": strategy, "n": rng.randint(2, 16), "aggregation": pick("aggregation"), "seed": common["seed"]},
    )


def cases(strategy: str, count: int) -> Iterator[tuple[Callable[..., None], World, dict[str, Any]]]:
    rng = random.Random(f"cases|{strategy}")
    for _ in range(count):
        yield random_case(strategy, rng)


CASES_PER_MUTATION = 60


@pytest.mark.parametrize(
    "strategy", ["beam_search", "dvts", "particle_filtering", "particle_gibbs", "majority_vote", "weighted_best_of_n"]
)
def test_the_mutation_cases_conform_unmutated(strategy: str) -> None:
    for check, world, options in cases(strategy, 8):
        check(world, **options)


def _wrap(monkeypatch: pytest.MonkeyPatch, module: str, name: str, make: Callable[[Any], Any]) -> None:
    """Replace ``module.name`` by ``make(original)`` for the test."""
    target = __import__(module, fromlist=[name])
    monkeypatch.setattr(target, name, make(getattr(target, name)))


def _no_lookahead_scoring(original: Any) -> Any:
    def roll_out(*args: Any, **kwargs: Any) -> Any:
        children, usage = yield from original(*args, **kwargs)
        return [c.model_copy(update={"lookahead": ""}) for c in children], usage

    return roll_out


def _truncated_is_finished(original: Any) -> Any:
    def extend(parent: Any, completion: Any, *, iteration: int) -> Any:
        if completion.finish_reason == "length":
            completion = completion.model_copy(update={"finish_reason": "eos"})
        return original(parent, completion, iteration=iteration)

    return extend


def _blank_step_stays_active(original: Any) -> Any:
    def extend(parent: Any, completion: Any, *, iteration: int) -> Any:
        child = original(parent, completion, iteration=iteration)
        if completion.finish_reason == "stop":
            child = child.model_copy(update={"finish_reason": "stop"})
        return child

    return extend


def _vote_with_last(original: Any) -> Any:
    def vote_(candidates: Any, **kwargs: Any) -> Any:
        relast = [c.model_copy(update={"score": c.step_scores[-1]}) if c.step_scores else c for c in candidates]
        return original(relast, **kwargs)

    return vote_


def _proportional_weights(original: Any) -> Any:
    def weights(scores: Any, temperature: float) -> list[float]:
        raw = [0.0 if s is None else s for s in scores]
        total = sum(raw)
        return [w / total for w in raw] if total else raw

    return weights


def _later_wins_ties(original: Any) -> Any:
    def rank_key(indexed: Any) -> tuple[float, int]:
        index, beam = indexed
        return (-(beam.score if beam.score is not None else float("-inf")), -index)

    return rank_key


def _heaviest_later(original: Any) -> Any:
    def heaviest(groups: Any, key: Any) -> Any:
        best = None
        for group in groups:
            if best is None or group.weight >= best.weight:
                best = group
        return best

    return heaviest


def _multinomial_only(original: Any) -> Any:
    def resample(weights: Any, k: int, rng: random.Random, *, method: str = "multinomial") -> list[int]:
        return original(weights, k, rng, method="multinomial")

    return resample


def _first_per_subtree(original: Any) -> Any:
    def first(candidates: Any) -> list[Any]:
        chosen: dict[int, Any] = {}
        for beam in candidates:
            if not beam.truncated:
                chosen.setdefault(beam.subtree, beam)
        return [chosen[subtree] for subtree in sorted(chosen)]

    return first


SEARCH = "langchain_ttc.core.search"
STEPWISE = "langchain_ttc.strategies.search.stepwise"
BEAM = "langchain_ttc.strategies.search.beam_search"
DVTS = "langchain_ttc.strategies.search.dvts"
PARTICLES = "langchain_ttc.strategies.search.particle_filtering"

MUTATIONS: dict[str, tuple[str, str, str, Callable[[Any], Any]]] = {
    # name: (strategy checked, module, function, the mutated function from the original)
    "refill order: the extra samples go to the last survivors": (
        "beam_search", BEAM, "repeat_counts",
        lambda f: lambda active, n: [n // active + (1 if i >= active - n % active else 0) for i in range(active)]
        if n % active else f(active, n),
    ),
    "children order: each parent's children together, not one of each in turn": (
        "beam_search", STEPWISE, "interleave", lambda f: lambda groups: [b for g in groups for b in g],
    ),
    "survivors per beam: one more than n / beam_width": (
        "beam_search", BEAM, "prune",
        lambda f: lambda beams, *, keep, filter_duplicates: f(beams, keep=keep + 1,
                                                              filter_duplicates=filter_duplicates),
    ),
    "pruning ties: the later candidate survives": ("beam_search", SEARCH, "_rank_key", _later_wins_ties),
    "final pick: the first n beams to finish, not the n best (the reference)": (
        "beam_search", STEPWISE, "top_by_score", lambda f: lambda beams, keep: list(beams)[:keep],
    ),
    "lookahead text generated but not scored (the reference's beam search)": (
        "beam_search", STEPWISE, "_roll_out", _no_lookahead_scoring,
    ),
    "truncation: a cut-off step finishes its beam (the reference)": (
        "beam_search", STEPWISE, "extend", _truncated_is_finished,
    ),
    "whitespace step: a step of only the delimiter keeps its beam active (the reference)": (
        "beam_search", STEPWISE, "extend", _blank_step_stays_active,
    ),
    "the vote: scores re-aggregated with last, whatever the aggregation (the reference's score.py)": (
        "beam_search", STEPWISE, "weighted_best_of_n", _vote_with_last,
    ),
    "seeds: every request of a call starts from the same seed": (
        "beam_search", STEPWISE, "seed_requests", lambda f: lambda requests, seed: [
            r.model_copy(update={"seed": seed}) for r in requests
        ],
    ),
    "seeds: one seed block for every iteration": (
        "dvts", STEPWISE, "derive_seed", lambda f: lambda seed, *label: f(seed, *label[:1]),
    ),
    "DVTS answered rule: a step stating a boxed answer does not end the subtree": (
        "dvts", DVTS, "answered", lambda f: lambda beam: beam,
    ),
    "DVTS: a subtree goes on with its first candidate, not its best": (
        "dvts", DVTS, "best_per_subtree", _first_per_subtree,
    ),
    "resampling weights: proportional to the score, not the softmax of its logit": (
        "particle_filtering", PARTICLES, "particle_weights", _proportional_weights,
    ),
    "resampling: systematic draws independently": ("particle_filtering", PARTICLES, "resample", _multinomial_only),
    "its_hub's stop rule: a step holding the stop text does not finish its particle": (
        "particle_filtering", PARTICLES, "stopped_at", lambda f: lambda beam, stop, delimiter="": beam,
    ),
    "particle Gibbs reference cut: a drawn reference keeps all its steps": (
        "particle_gibbs", PARTICLES, "ancestry", lambda f: lambda beam, lineage: [beam],
    ),
    "majority vote ties: the answer seen last wins": (
        "majority_vote", "langchain_ttc.core.voting", "_heaviest", _heaviest_later,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_fails_the_comparison(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    strategy, module, function, mutate = MUTATIONS[name]
    _wrap(monkeypatch, module, function, mutate)
    for check, world, options in cases(strategy, CASES_PER_MUTATION):
        try:
            check(world, **options)
        except AssertionError:
            return  # the comparison caught it
    pytest.fail(f"no case of {CASES_PER_MUTATION} caught the mutation {name!r}")
