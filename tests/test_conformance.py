"""Conformance: each strategy graph against an independent restatement of the reference algorithm.

The restatements below follow huggingface/search-and-learn (``src/sal/search/beam_search.py``,
``diverse_verifier_tree_search.py``, ``best_of_n.py``, ``src/sal/utils/score.py``) line by line in
plain Python, with our documented fixes (docs/differences.md, "Differences from the reference"):

- a truncated completion (``max_tokens``) is never finished and never chosen;
- the final pick is over the ``n`` best-scored finished beams, not the first ``n`` to finish, and
  takes each finished beam once (the reference pads the list to ``n`` with copies);
- DVTS keeps only the finished siblings of a subtree's last expansion;
- ties in score go to the earlier candidate (the reference's ``np.argsort`` leaves them unspecified).

Particle filtering follows Puri et al. (2025) and its_hub's ``ParticleFiltering``: weights are the
softmax of the PRM score's logit (over a temperature), every particle (finished ones too) is
resampled with replacement each step; the resampling draws come from the documented seed stream.

Hypothesis draws random scripted worlds (a policy whose next step is a pure function of the partial
solution and how many samples were already drawn from it, a PRM whose score is a pure function of
the prefix) and random settings, runs the graph and the restatement on the same world, and compares
what each iteration sampled, what survived, and the final answer.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_ttc import (
    create_beam_search_graph,
    create_best_of_n_graph,
    create_dvts_graph,
    create_majority_vote_graph,
    create_particle_filtering_graph,
    create_weighted_best_of_n_graph,
)
from langchain_ttc.core.aggregation import aggregate
from langchain_ttc.core.answers import extract_boxed
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult, ScoreRequest, StepScores
from langchain_ttc.engines.base import PolicyEngine, PRMEngine

DELIM = "\n\n"
PROBLEM = "What is the answer?"


def _unit(*key: object) -> float:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class World:
    """A random scripted world: the step each sample writes and the score of each prefix."""

    def __init__(self, seed: int, *, steps: int, answers: int, p_end: float, p_length: float, p_blank: float) -> None:
        self.seed, self.steps, self.answers = seed, steps, answers
        self.p_end, self.p_length, self.p_blank = p_end, p_length, p_blank

    def step(self, partial: str, k: int, *, to_the_end: bool) -> tuple[str, str]:
        """The ``k``-th sample drawn from ``partial``: ``(text, finish_reason)``."""
        rng = random.Random(f"{self.seed}|{partial}|{k}|{to_the_end}")
        roll = rng.random()
        answer = f"\\boxed{{{rng.randrange(self.answers)}}}"
        if roll < self.p_length:
            return f"cut {rng.randrange(self.steps)}", "length"
        if to_the_end or roll < self.p_length + self.p_end:
            return f"so {answer}", "eos"
        if roll < self.p_length + self.p_end + self.p_blank:
            return DELIM, "stop"
        return f"step {rng.randrange(self.steps)}{DELIM}", "stop"

    def score(self, steps: list[str]) -> list[float]:
        return [_unit(self.seed, tuple(steps[: i + 1])) for i in range(len(steps))]


class WorldPolicy(PolicyEngine):
    """The world's policy as an engine: samples drawn from one partial are numbered across the run."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.drawn: Counter[str] = Counter()
        self.calls: list[list[GenerationRequest]] = []

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        # Draw in the reference's order: one sample for each request in turn (its list of beams
        # repeated up to n). Samples are exchangeable for a real engine; numbering them this way
        # makes two survivors with the same text get the same samples in both implementations.
        self.calls.append(requests)
        completions: list[list[Completion]] = [[] for _ in requests]
        for k in range(max((r.n for r in requests), default=0)):
            for r, out in zip(requests, completions, strict=True):
                if k < r.n:
                    text, reason = self.world.step(r.partial, self.drawn[r.partial], to_the_end=not r.stop)
                    self.drawn[r.partial] += 1
                    out.append(Completion(text=text, num_tokens=len(text), finish_reason=reason))  # type: ignore[arg-type]
        return [GenerationResult(completions=c, prompt_tokens=1) for c in completions]


class WorldPRM(PRMEngine):
    def __init__(self, world: World) -> None:
        self.world = world

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        return [StepScores(scores=self.world.score(r.steps), num_tokens=1) for r in requests]


# ---- the restatements (plain Python, no code shared with the package but aggregation and answers) ----


def steps_of(text: str) -> list[str]:
    return [s.strip() for s in text.split(DELIM) if s.strip()]


class Sampler:
    """Draws from the world in the reference's order, numbering samples per partial as the engine does."""

    def __init__(self, world: World) -> None:
        self.world, self.drawn = world, Counter[str]()

    def __call__(self, partial: str, *, to_the_end: bool) -> tuple[str, str]:
        text, reason = self.world.step(partial, self.drawn[partial], to_the_end=to_the_end)
        self.drawn[partial] += 1
        if reason == "stop" and not text.strip():
            reason = "eos"  # a step of only whitespace ends the beam (the reference's empty step)
        return partial + text, reason


def agg_score(world: World, text: str, aggregation: str) -> float | None:
    steps = steps_of(text)
    return aggregate(world.score(steps), aggregation) if steps else None


def rank(scores: list[float | None]) -> list[int]:
    """Indices best first; ties and unscored ones in order (unscored last)."""
    return sorted(range(len(scores)), key=lambda i: (scores[i] is None, -(scores[i] or 0.0), i))


def groups_of(texts: list[str], weights: list[float]) -> list[tuple[str, float, list[int]]]:
    found: dict[str, tuple[float, list[int]]] = {}
    for i, (text, weight) in enumerate(zip(texts, weights, strict=True)):
        answer = extract_boxed(text)
        if answer is None:
            continue
        total, members = found.get(answer, (0.0, []))
        found[answer] = (total + weight, [*members, i])
    return [(a, w, m) for a, (w, m) in found.items()]


def pick(texts: list[str], scores: list[float], rule: str) -> str | None:
    """The reference's final pick over finished candidates (``best``, ``weighted`` or ``majority``)."""
    if rule == "best":
        with_answer = [i for i in range(len(texts)) if extract_boxed(texts[i]) is not None]
        return extract_boxed(texts[max(with_answer, key=lambda i: (scores[i], -i))]) if with_answer else None
    weights = [1.0] * len(texts) if rule == "majority" else scores
    groups = groups_of(texts, weights)
    if not groups:
        return None
    best = groups[0]
    for group in groups[1:]:
        if group[1] > best[1]:
            best = group
    return best[0]


def reference_beam_search(world: World, *, n: int, m: int, iterations: int, aggregation: str,
                          filter_duplicates: bool, final: str) -> dict[str, Any]:  # fmt: skip
    sample = Sampler(world)
    active = [""]
    completed: list[str] = []
    expanded: list[Counter[str]] = []  # per iteration: how many continuations each partial wrote
    for i in range(iterations):
        active = (active * (n // len(active) + 1))[:n]  # duplicate the active beams up to n
        expanded.append(Counter(active))
        last = i == iterations - 1
        children = [sample(text, to_the_end=last) for text in active]
        completed += [text for text, reason in children if reason == "eos"]
        active = [text for text, reason in children if reason == "stop"]  # truncated ones: dropped, never completed
        if not active:
            break
        if filter_duplicates:
            active = list(dict.fromkeys(active))
        scores = [agg_score(world, t, aggregation) for t in active]
        keep = set(rank(scores)[: n // m])
        active = [t for j, t in enumerate(active) if j in keep]  # survivors keep their order
    scores = [agg_score(world, t, aggregation) for t in completed]
    order = rank(scores)[:n]
    texts = [completed[j] for j in order]
    answer = pick(texts, [scores[j] or 0.0 for j in order], final)
    return {"expanded": expanded, "pool": sorted(texts), "answer": answer}


def reference_dvts(world: World, *, n: int, m: int, iterations: int, aggregation: str, final: str) -> dict[str, Any]:
    sample = Sampler(world)
    current = {t: "" for t in range(n // m)}
    leaves: list[str] = []
    sampled_per_iteration = []
    for i in range(iterations):
        if not current:
            break
        last = i == iterations - 1
        sampled_per_iteration.append(len(current) * m)
        drawn: dict[int, list[tuple[str, str]]] = {t: [] for t in current}
        for _ in range(m):  # one sample for each subtree in turn (samples are exchangeable)
            for t in current:
                drawn[t].append(sample(current[t], to_the_end=last))
        for t in list(current):
            siblings = drawn[t]
            siblings = [(text, "eos" if r == "stop" and extract_boxed(text) is not None else r) for text, r in siblings]
            scores = [agg_score(world, text, aggregation) if r != "length" else None for text, r in siblings]
            ranked = [j for j in rank(scores) if siblings[j][1] != "length"]
            if ranked and siblings[ranked[0]][1] == "stop":
                current[t] = siblings[ranked[0]][0]  # extend greedily with the best candidate
                continue
            leaves += [text for text, r in siblings if r == "eos"]  # finished siblings of the last expansion
            del current[t]
    scores = [agg_score(world, t, aggregation) for t in leaves]
    order = rank(scores)[:n]
    texts = [leaves[j] for j in order]
    answer = pick(texts, [scores[j] or 0.0 for j in order], final)
    return {"sampled": sampled_per_iteration, "pool": sorted(texts), "answer": answer}


def reference_particle_filtering(world: World, *, n: int, iterations: int, aggregation: str, temperature: float,
                                 method: str, seed: int, final: str) -> dict[str, Any]:  # fmt: skip
    """Puri et al. 2025 / its_hub's particle filtering, with the finished particles kept in the population."""
    sample = Sampler(world)
    active, finished = [""], []
    expanded: list[Counter[str]] = []
    for i in range(iterations):
        last = i == iterations - 1
        partials = active * n if i == 0 else active  # n first steps from the empty solution, then one each
        expanded.append(Counter(partials))
        children = [sample(text, to_the_end=last) for text in partials]
        population = [(t, r) for t, r in children] + [(t, "eos") for t in finished]
        scores = [None if r == "length" else agg_score(world, t, aggregation) for t, r in population]
        logits = [None if s is None else math.log(min(max(s, 1e-7), 1 - 1e-7) / (1 - min(max(s, 1e-7), 1 - 1e-7)))
                  / temperature for s in scores]  # fmt: skip
        if all(x is None for x in logits):
            break
        top = max(x for x in logits if x is not None)
        weights = [0.0 if x is None else math.exp(x - top) for x in logits]
        weights = [w / sum(weights) for w in weights]
        rng = random.Random(derive_seed(seed, "resample", i))
        if method == "multinomial":
            picks = rng.choices(range(len(population)), weights=weights, k=n)
        else:  # systematic: evenly spaced points from one uniform offset on the cumulative weights
            offset, cumulative, picks = rng.random() / n, list(itertools.accumulate(weights)), []
            for k in range(n):
                picks.append(min(bisect.bisect_left(cumulative, offset + k / n), len(population) - 1))
        drawn = [population[j] for j in picks]
        active = [t for t, r in drawn if r == "stop"]
        finished = [t for t, r in drawn if r == "eos"]
        if not active:
            break
    scores = [agg_score(world, t, aggregation) for t in finished]
    order = rank(scores)[:n]
    texts = [finished[j] for j in order]
    answer = pick(texts, [scores[j] or 0.0 for j in order], final)
    return {"expanded": expanded, "pool": sorted(texts), "answer": answer}


def reference_particle_gibbs(world: World, *, n: int, rounds: int, refs: int, iterations: int, aggregation: str,
                             temperature: float, seed: int, final: str) -> dict[str, Any]:  # fmt: skip
    """Puri et al. 2025 / its_hub's ``ParticleGibbs`` (multinomial resampling; a particle is the texts it went through).

    ``n / rounds`` particles per sweep; after a sweep ``refs`` references are drawn from its population by
    weight; a sweep resamples ``n / rounds - refs`` particles from its own and the references (a
    reference weighs its final score), and a drawn reference longer than the sweep so far is cut back
    to its first steps and goes on. The last sweep's population, references included, is picked from.
    """
    sample = Sampler(world)
    m = n // rounds
    references: list[tuple[list[str], str]] = []
    expanded: list[Counter[str]] = []

    def weights_of(particles: list[tuple[list[str], str]]) -> list[float] | None:
        scores = [None if r == "length" else agg_score(world, texts[-1], aggregation) for texts, r in particles]
        clip = [None if s is None else min(max(s, 1e-7), 1 - 1e-7) for s in scores]
        logits = [None if c is None else math.log(c / (1 - c)) / temperature for c in clip]
        if all(x is None for x in logits):
            return None
        top = max(x for x in logits if x is not None)
        exps = [0.0 if x is None else math.exp(x - top) for x in logits]
        return [e / sum(exps) for e in exps]

    finished: list[tuple[list[str], str]] = []
    for sweep in range(rounds):
        label: tuple[Any, ...] = ("round", sweep) if sweep else ()
        free = m - len(references)
        active: list[tuple[list[str], str]] = [([""], "stop")]
        finished = []
        for i in range(iterations):
            last = i == iterations - 1
            partials = active * free if i == 0 else active
            expanded.append(Counter(texts[-1] for texts, _ in partials))
            children = []
            for texts, _ in partials:
                text, reason = sample(texts[-1], to_the_end=last)
                children.append(([*texts, text] if texts != [""] else [text], reason))
            population = children + finished + references
            weights = weights_of(population)
            if weights is None:
                return finish(world, finished, aggregation, n, final, expanded)
            rng = random.Random(derive_seed(seed, "resample", i, *label))
            drawn = [population[j] for j in rng.choices(range(len(population)), weights=weights, k=free)]
            drawn = [(texts[: i + 1], "stop") if len(texts) > i + 1 else (texts, r) for texts, r in drawn]
            active = [p for p in drawn if p[1] == "stop"]
            finished = [p for p in drawn if p[1] == "eos"]
            if not active:
                break
        finished = finished + references
        if sweep < rounds - 1:
            weights = weights_of(finished)
            assert weights is not None
            rng = random.Random(derive_seed(seed, "references", sweep + 1))
            references = [finished[j] for j in rng.choices(range(len(finished)), weights=weights, k=refs)]
    return finish(world, finished, aggregation, n, final, expanded)


def finish(world: World, finished: list[tuple[list[str], str]], aggregation: str, n: int, final: str,
           expanded: list[Counter[str]]) -> dict[str, Any]:  # fmt: skip
    texts = [t[-1] for t, _ in finished]
    scores = [agg_score(world, t, aggregation) for t in texts]
    order = rank(scores)[:n]
    kept = [texts[j] for j in order]
    return {"expanded": expanded, "pool": sorted(kept), "answer": pick(kept, [scores[j] or 0.0 for j in order], final)}


def reference_sampling(world: World, *, n: int, aggregation: str, rule: str) -> str | None:
    sample = Sampler(world)
    drawn = [sample("", to_the_end=True) for _ in range(n)]
    texts = [text for text, reason in drawn if reason != "length"]
    scores = [agg_score(world, t, aggregation) or 0.0 for t in texts]
    return pick(texts, scores, rule)


# ---- the graphs on the same worlds ----

worlds = st.builds(
    World,
    st.integers(0, 10**6),
    steps=st.integers(1, 4),
    answers=st.integers(1, 4),
    p_end=st.sampled_from([0.05, 0.2, 0.5]),
    p_length=st.sampled_from([0.0, 0.1, 0.3]),
    p_blank=st.sampled_from([0.0, 0.05]),
)
widths = st.sampled_from([(4, 1), (4, 2), (4, 4), (8, 2), (8, 4), (12, 3), (16, 4)])
aggregations = st.sampled_from(["last", "min", "prod", "mean"])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pool(output: dict[str, Any]) -> list[str]:
    """The candidates the final selection picked from (finished ones; truncated ones are listed apart)."""
    return sorted(c["text"] for c in output["result"]["candidates"] if c["finish_reason"] != "length")


def expanded(policy: WorldPolicy) -> list[Counter[str]]:
    """Per iteration (policy call): how many continuations each partial solution wrote."""
    counts = []
    for call in policy.calls:
        counted: Counter[str] = Counter()
        for r in call:
            counted[r.partial] += r.n
        counts.append(counted)
    return counts


@SETTINGS
@given(world=worlds, width=widths, iterations=st.integers(1, 6), aggregation=aggregations,
       filter_duplicates=st.booleans(), final=st.sampled_from(["best", "weighted"]))  # fmt: skip
def test_beam_search_conforms(world: World, width: tuple[int, int], iterations: int, aggregation: str,
                              filter_duplicates: bool, final: str) -> None:  # fmt: skip
    n, m = width
    policy = WorldPolicy(world)
    graph = create_beam_search_graph(
        policy, WorldPRM(world), n=n, beam_width=m, max_iterations=iterations, aggregation=aggregation,
        filter_duplicates=filter_duplicates, selection=final,  # type: ignore[arg-type]
    )  # fmt: skip
    output = graph.invoke({"problem": PROBLEM})
    answer = output["answer"]
    expected = reference_beam_search(world, n=n, m=m, iterations=iterations, aggregation=aggregation,
                                     filter_duplicates=filter_duplicates, final=final)  # fmt: skip
    # The same survivors, each writing the same number of continuations, every iteration.
    assert expanded(policy) == expected["expanded"]
    assert all(sum(r.n for r in call) == n for call in policy.calls)  # the whole budget, every iteration
    assert pool(output) == expected["pool"]
    assert answer == expected["answer"]


@SETTINGS
@given(world=worlds, width=widths, iterations=st.integers(1, 6), aggregation=aggregations,
       final=st.sampled_from(["best", "weighted"]))  # fmt: skip
def test_dvts_conforms(world: World, width: tuple[int, int], iterations: int, aggregation: str, final: str) -> None:
    n, m = width
    policy = WorldPolicy(world)
    graph = create_dvts_graph(
        policy, WorldPRM(world), n=n, beam_width=m, max_iterations=iterations, aggregation=aggregation,
        selection=final,  # type: ignore[arg-type]
    )  # fmt: skip
    output = graph.invoke({"problem": PROBLEM})
    answer = output["answer"]
    expected = reference_dvts(world, n=n, m=m, iterations=iterations, aggregation=aggregation, final=final)
    assert [sum(r.n for r in call) for call in policy.calls] == expected["sampled"]
    assert pool(output) == expected["pool"]
    assert answer == expected["answer"]


@SETTINGS
@given(world=worlds, n=st.integers(1, 12), iterations=st.integers(1, 6), aggregation=aggregations,
       temperature=st.sampled_from([0.2, 1.0, 3.0]), method=st.sampled_from(["multinomial", "systematic"]),
       seed=st.integers(0, 1000), final=st.sampled_from(["best", "weighted"]))  # fmt: skip
def test_particle_filtering_conforms(world: World, n: int, iterations: int, aggregation: str, temperature: float,
                                     method: str, seed: int, final: str) -> None:  # fmt: skip
    policy = WorldPolicy(world)
    graph = create_particle_filtering_graph(
        policy, WorldPRM(world), n=n, max_iterations=iterations, aggregation=aggregation,  # type: ignore[arg-type]
        resampling_temperature=temperature, resampling=method, seed=seed, selection=final,  # type: ignore[arg-type]
    )  # fmt: skip
    output = graph.invoke({"problem": PROBLEM})
    expected = reference_particle_filtering(world, n=n, iterations=iterations, aggregation=aggregation,
                                            temperature=temperature, method=method, seed=seed, final=final)  # fmt: skip
    assert expanded(policy) == expected["expanded"]  # the same particles write, as often, every iteration
    assert all(sum(r.n for r in call) <= n for call in policy.calls)
    assert pool(output) == expected["pool"]
    assert output["answer"] == expected["answer"]


@SETTINGS
@given(world=worlds, rounds=st.integers(2, 3), per_round=st.integers(2, 5), refs=st.integers(1, 2),
       iterations=st.integers(1, 5), aggregation=aggregations, temperature=st.sampled_from([0.2, 1.0, 3.0]),
       seed=st.integers(0, 1000), final=st.sampled_from(["best", "weighted"]))  # fmt: skip
def test_particle_gibbs_conforms(world: World, rounds: int, per_round: int, refs: int, iterations: int,
                                 aggregation: str, temperature: float, seed: int, final: str) -> None:  # fmt: skip
    refs = min(refs, per_round - 1)
    policy = WorldPolicy(world)
    graph = create_particle_filtering_graph(
        policy, WorldPRM(world), n=rounds * per_round, rounds=rounds, reference_particles=refs,
        max_iterations=iterations, aggregation=aggregation, resampling_temperature=temperature, seed=seed,  # type: ignore[arg-type]
        selection=final,  # type: ignore[arg-type]
    )  # fmt: skip
    output = graph.invoke({"problem": PROBLEM})
    expected = reference_particle_gibbs(
        world, n=rounds * per_round, rounds=rounds, refs=refs, iterations=iterations, aggregation=aggregation,
        temperature=temperature, seed=seed, final=final,
    )  # fmt: skip
    assert expanded(policy) == expected["expanded"]  # the same particles write, as often, in every sweep
    assert pool(output) == expected["pool"]
    assert output["answer"] == expected["answer"]


SAMPLING: dict[str, tuple[Callable[..., Any], str, bool]] = {
    "majority_vote": (create_majority_vote_graph, "majority", False),
    "best_of_n": (create_best_of_n_graph, "best", True),
    "weighted_best_of_n": (create_weighted_best_of_n_graph, "weighted", True),
}


@SETTINGS
@given(world=worlds, n=st.integers(1, 16), aggregation=aggregations, strategy=st.sampled_from(sorted(SAMPLING)))
def test_sampling_strategies_conform(world: World, n: int, aggregation: str, strategy: str) -> None:
    factory, rule, scored = SAMPLING[strategy]
    policy = WorldPolicy(world)
    options = {"aggregation": aggregation} if scored else {}
    graph = factory(policy, WorldPRM(world), n=n, **options) if scored else factory(policy, n=n)
    answer = graph.invoke({"problem": PROBLEM})["answer"]
    assert [sum(r.n for r in call) for call in policy.calls] == [n]
    assert answer == reference_sampling(world, n=n, aggregation=aggregation, rule=rule)
