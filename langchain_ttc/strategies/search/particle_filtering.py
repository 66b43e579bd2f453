"""Particle filtering (Puri et al., 2025) as a resumable, streaming LangGraph graph.

In: ``{"problem": str}`` or ``{"messages": [...]}``. Out: ``{"answer", "result"}``.

``n`` particles start from the empty solution. Each iteration (``generate`` → ``score`` →
``resample``, looped by a conditional edge):

1. every active particle writes one step (one batched policy call; stop at the delimiter);
2. the PRM scores the new partial solutions (one call);
3. every particle, active or finished, gets a weight: the softmax of the logit of its aggregated
   score over ``resampling_temperature`` (the paper's and its_hub's rule); truncated particles
   get none; ``n`` particles are drawn with replacement in proportion to the weights
   (``multinomial``, or ``systematic``), so likely partial solutions multiply and unlikely ones
   die out, instead of beam search's fixed top-k. Finished particles are kept in the population
   and resampled like the others.

A particle is finished when its step ends the solution (end of sequence, or a step of only
whitespace). With ``stop_at`` (its_hub's stop token: ``"\\boxed"`` in every one of its examples), a
particle whose new step contains that text (read without the closing delimiter) is finished too, as
soon as ``generate`` wrote it: the PRM scores it as written (any lookahead rolled past that step is
dropped unscored; its tokens still count in the usage) and it is resampled as a finished particle.
Unlike its_hub, end of sequence always ends a particle (its policy does not report it). its_hub's
examples aggregate the step scores with ``prod`` (``aggregation="prod"``; the default, ``last``, is
the one every search here shares) and pick the heaviest particle (``selection="best"``).

The last iteration writes to the end. The search stops when no particle is active or at
``max_iterations``; the answer is the weighted vote over the final population's finished
particles (``selection="weighted"``, each particle weighted by its score, copies counting as
often as they were drawn) or its best particle (``"best"``). With ``adaptive_threshold=t`` the
search (a sweep, under particle Gibbs) also ends once the weighted vote over the population's
finished particles is settled (the Adaptive-Consistency rule of :mod:`langchain_ttc.core.stopping`:
P(the leader stays the leader) >= ``t``), recorded under ``early_stop`` in the record of the
iteration it ends after (``metadata["iterations"]``); resampled copies are not independent samples,
so read the posterior as optimistic. Resampling draws from a random stream
seeded per iteration (:mod:`langchain_ttc.core.seeds`), so a seeded run is reproducible.

**Particle Gibbs** (``rounds > 1``; the paper's section 3.2, its_hub's ``ParticleGibbs``): the budget
``n`` is split into ``rounds`` sweeps of ``n / rounds`` particles. After a sweep,
``reference_particles`` finished particles are drawn in proportion to their weights. The next sweep
runs ``n / rounds - reference_particles`` fresh particles beside the references: the references stay
in the population at every resampling with their final weight, and a reference drawn at step ``t``
comes back as its own first ``t`` steps and continues from there (conditional sequential Monte
Carlo). The answer is picked from the last sweep's population (its references included).

Example:
    >>> graph = create_particle_filtering_graph(policy, prm, n=8, resampling_temperature=1.0)  # doctest: +SKIP
    >>> gibbs = create_particle_filtering_graph(policy, prm, n=8, rounds=2)  # doctest: +SKIP
    >>> like_its_hub = create_particle_filtering_graph(  # doctest: +SKIP
    ...     policy, prm, n=8, stop_at="\\boxed", aggregation="prod", selection="best"
    ... )

"""

from __future__ import annotations

import random
from typing import Any, Literal, Self, cast

from langgraph.runtime import Runtime
from langgraph.types import Checkpointer
from pydantic import Field, model_validator

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.search import Beam, particle_weights, resample, stopped_at
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.tree import TreeNode
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.config import Aggregation, SelectionRule, StepSearchConfig, choose_answers, validated
from langchain_ttc.strategies.context import TTCContext
from langchain_ttc.strategies.driver import Calls, emit
from langchain_ttc.strategies.graphs import StrategyGraph, config_of, dumped
from langchain_ttc.strategies.search.stepwise import (
    SearchState,
    beams_of,
    build_search_graph,
    check_engines,
    close_iteration,
    make_search_nodes,
)
from langchain_ttc.strategies.spec import StrategySpec

Resampling = Literal["multinomial", "systematic"]
STOP_AT = (
    "A particle whose step contains this text is finished (its_hub's rule, e.g. '\\boxed'); None: only end of "
    "sequence or a step of only whitespace ends one."
)


class ParticleFilteringConfig(StepSearchConfig):
    """Particle filtering: ``n`` particles, resampled each step in proportion to their PRM scores."""

    resampling_temperature: float = Field(
        1.0, gt=0.0, description="Softmax temperature of the particle weights (lower: greedier)."
    )
    resampling: Resampling = Field("multinomial", description="How particles are drawn: multinomial or systematic.")
    rounds: int = Field(1, ge=1, description="Particle Gibbs sweeps that share the budget n (1: particle filtering).")
    reference_particles: int = Field(
        1, ge=1, description="Particle Gibbs: finished particles carried into the next sweep as references."
    )
    stop_at: str | None = Field(None, min_length=1, description=STOP_AT)

    @property
    def particles(self) -> int:
        """Particles per sweep: the budget split over the rounds."""
        return self.n // self.rounds

    @model_validator(mode="after")
    def _rounds_split_n(self) -> Self:
        if self.n % self.rounds:
            raise ValueError(
                f"rounds={self.rounds} does not divide n={self.n}; pass a multiple of rounds as n, "
                f"e.g. n={self.rounds * max(1, self.n // self.rounds)}."
            )
        if self.rounds > 1 and self.reference_particles >= self.particles:
            raise ValueError(
                f"reference_particles={self.reference_particles} leaves no fresh particle in a sweep of "
                f"n / rounds = {self.particles}; pass fewer reference particles or a larger n."
            )
        return self


class ParticleState(SearchState, total=False):
    """The search state plus particle Gibbs's sweep: its number, its references, and the beams their steps come from."""

    sweep: int
    references: list[dict[str, Any]]
    lineage: list[dict[str, Any]]


def sweep_of(state: SearchState) -> int:
    """The sweep a particle search is in (0: the first, and the only one of plain particle filtering)."""
    return int(cast(ParticleState, state).get("sweep", 0))


def sweep_label(state: SearchState) -> tuple[str | int, ...]:
    """What particle Gibbs adds to its seed labels after the first sweep (the first draws as particle filtering)."""
    sweep = sweep_of(state)
    return ("round", sweep) if sweep else ()


def fresh_particles(run: ParticleFilteringConfig, sweep: int) -> int:
    """Particles a sweep draws besides its references (all of them in the first sweep)."""
    return run.particles - (run.reference_particles if sweep else 0)


def ancestry(beam: Beam, lineage: list[Beam]) -> list[Beam]:
    """``beam``'s partial solutions from its first step to itself (``lineage`` holds its ancestors)."""
    by_id = {b.id: b for b in lineage}
    chain = [beam]
    while chain[-1].parent in by_id:
        chain.append(by_id[chain[-1].parent])
    return chain[::-1]


def create_particle_filtering_graph(
    policy: PolicyEngine,
    prm: PRMEngine,
    *,
    n: int,
    resampling_temperature: float = 1.0,
    resampling: Resampling = "multinomial",
    rounds: int = 1,
    reference_particles: int = 1,
    adaptive_threshold: float | None = None,
    stop_at: str | None = None,
    max_iterations: int = 40,
    lookahead: int = 0,
    step_delimiter: str = "\n\n",
    aggregation: Aggregation = "last",
    selection: SelectionRule = "weighted",
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    record_tree: bool = False,
    answers: str = "math",
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "particle_filtering",
) -> StrategyGraph:
    """Build the particle filtering graph: ``start``, then ``generate`` → ``score`` → ``prune`` in a loop, ``select``.

    Args:
        policy: The policy engine; it must continue partial assistant messages.
        prm: The PRM engine.
        n: The budget: solutions sampled (or beams written per iteration).
        resampling_temperature: Softmax temperature of the particle weights (lower: greedier).
        resampling: How particles are drawn: multinomial or systematic.
        rounds: Particle Gibbs sweeps that share the budget n (1: particle filtering).
        reference_particles: Particle Gibbs: finished particles carried into the next sweep as references.
        adaptive_threshold: Stop early once the finished solutions' weighted vote is settled: P(its leader stays the
            leader) >= this, in (0.5, 1] (None: off).
        stop_at: A particle whose step contains this text is finished (its_hub's rule, e.g. '\\boxed'); None: only end
            of sequence or a step of only whitespace ends one.
        max_iterations: Most steps per solution; the last one writes to the end.
        lookahead: Greedy steps rolled out past each candidate before scoring.
        step_delimiter: The text between steps, e.g. '\\n\\n'.
        aggregation: How step scores become one score: last, min, prod, mean.
        selection: Final pick: weighted vote over finished solutions, or best.
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus sampling mass, in (0, 1].
        max_tokens: Most tokens per solution (per step in the searches); a cut-off one is never picked.
        seed: Seed for reproducible sampling (each draw gets its own stream).
        system_prompt: Optional system message put before the problem, or preset:<name> (preset:search-and-learn).
        record_tree: Keep the whole search tree in the result (metadata['tree']).
        answers: The answer key, by name: math (the last \\boxed{}, compared by equivalence), reference-math
            (search-and-learn's parser, compared by canonical form), number, short, multiple-choice or tool_calls.
        answer_key: An answer key object of your own instead of a name (recorded as answers='custom:<its name>';
            leave answers at its default).
        checkpointer: Optional LangGraph checkpointer (a search can pause and resume).
        name: The compiled graph's name.

    Raises:
        ValueError: If ``n < 1``, ``resampling_temperature <= 0``, an unknown resampling, ``rounds``
            that do not divide ``n``, too many reference particles, ``adaptive_threshold`` outside (0.5, 1] or
            with ``selection="best"``, an empty ``stop_at``, or another option is out of range.
        TypeError: If an engine has the wrong type or the policy cannot continue partial messages.

    """
    config = validated(
        ParticleFilteringConfig, n=n, resampling_temperature=resampling_temperature, resampling=resampling,
        rounds=rounds, reference_particles=reference_particles, adaptive_threshold=adaptive_threshold,
        stop_at=stop_at, max_iterations=max_iterations, lookahead=lookahead,
        step_delimiter=step_delimiter, aggregation=aggregation, selection=selection, temperature=temperature,
        top_p=top_p, max_tokens=max_tokens, seed=seed, system_prompt=system_prompt, record_tree=record_tree,
        answers=choose_answers(answers, answer_key),
    )  # fmt: skip
    return build_particle_filtering_graph(
        policy, prm, config, answer_key=answer_key, checkpointer=checkpointer, name=name
    )


def build_particle_filtering_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: ParticleFilteringConfig,
    *,
    answer_key: AnswerKey | None = None,
    checkpointer: Checkpointer = None,
    name: str = "particle_filtering",
) -> StrategyGraph:
    """The particle filtering graph for a validated config (the registry's builder)."""
    policy, prm = check_engines(policy, prm)
    config.answer_key(answer_key)  # a custom:<name> setting without its key object fails here
    # A sweep's first iteration writes its fresh particles' first steps from one empty root; later, one step
    # per active particle.
    nodes = make_search_nodes(
        policy,
        prm,
        config,
        roots=lambda run: [Beam()],
        widths=lambda run, frontier, state: [
            fresh_particles(run, sweep_of(state)) if b.parent is None else 1 for b in frontier
        ],
        seed_labels=sweep_label,
    )
    write_steps = nodes["generate"]

    def generate_node(state: SearchState, runtime: Runtime[TTCContext]) -> Calls[dict[str, Any]]:
        update: dict[str, Any] = yield from write_steps(state, runtime)
        run = config_of(state, ParticleFilteringConfig)
        if run.stop_at is not None:  # its_hub's rule: a step that holds the stop text ends its particle
            written = [Beam.model_validate(b) for b in update["candidates"]]
            update["candidates"] = dumped([stopped_at(b, run.stop_at, run.step_delimiter) for b in written])
        return update

    nodes["generate"] = generate_node

    def resample_node(state: SearchState) -> dict[str, Any]:
        run = config_of(state, ParticleFilteringConfig)
        references = beams_of(state, "references")
        candidates = beams_of(state, "candidates")
        population = candidates + beams_of(state, "finished") + references
        weights = particle_weights([None if b.truncated else b.score for b in population], run.resampling_temperature)
        truncated = beams_of(state, "truncated") + [b for b in candidates if b.truncated]
        if not any(weights):  # every particle truncated or unscored: the search ends with what this sweep has
            update = close_iteration(state, frontier=[], finished=beams_of(state, "finished"), truncated=truncated)
            return update | {"sweep": run.rounds - 1, "references": []}  # no sweep follows
        # Particle Gibbs keeps the sweep's partial solutions: a reference's first steps are read from them.
        lineage = (
            beams_of(state, "lineage") + [b.model_copy(update={"lookahead": ""}) for b in candidates]
            if run.rounds > 1
            else []
        )
        rng = random.Random(derive_seed(run.seed, "resample", state["iteration"], *sweep_label(state)))
        picks = resample(weights, fresh_particles(run, sweep_of(state)), rng, method=run.resampling)
        drawn = [population[i] for i in picks]
        if references:  # a drawn reference comes back as its first steps (as many as the sweep has written)
            steps = state["iteration"] + 1
            chains = {r.id: ancestry(r, lineage) for r in references}
            drawn = [chains[b.id][steps - 1] if b.id in chains and len(chains[b.id]) > steps else b for b in drawn]
        frontier, finished = [b for b in drawn if b.active], [b for b in drawn if b.complete]
        update = close_iteration(state, frontier=frontier, finished=finished, truncated=truncated)
        if lineage:
            update["lineage"] = dumped(lineage)
        return update

    def sweep_node(state: SearchState) -> dict[str, Any]:
        return next_sweep(config_of(state, ParticleFilteringConfig), state)

    return build_search_graph(
        nodes,
        prune=resample_node,
        sweep=sweep_node,
        answer_key=answer_key,
        checkpointer=checkpointer,
        name=name,
        state=ParticleState,
    )


def next_sweep(run: ParticleFilteringConfig, state: SearchState) -> dict[str, Any]:
    """End a sweep: draw its references and start the next sweep, or leave the last one's population to ``select``."""
    population = beams_of(state, "finished") + beams_of(state, "references")
    sweep = sweep_of(state) + 1
    if sweep >= run.rounds:
        return {"finished": dumped(population), "frontier": []}
    weights = particle_weights([b.score for b in population], run.resampling_temperature)
    rng = random.Random(derive_seed(run.seed, "references", sweep))
    references = [population[i] for i in resample(weights, run.reference_particles, rng)]
    lineage = beams_of(state, "lineage")
    root = Beam(id=state["next_id"])
    update: dict[str, Any] = {
        "sweep": sweep,
        "iteration": 0,
        "next_id": root.id + 1,
        "frontier": [root.model_dump()],
        "finished": [],
        "references": dumped(references),
        "lineage": [b.model_dump() for r in references for b in ancestry(r, lineage)],
    }
    if run.record_tree:
        update["tree"] = [*state.get("tree", []), TreeNode(id=root.id, parent=None, fate="kept").model_dump()]
    emit({"type": "ttc.sweep", "sweep": sweep, "references": [b.id for b in references]})
    return update


def filtered_particles(options: dict[str, Any], budget: int, pilots: int) -> int:
    """A routed particle filter runs the particles the pilots leave, in whole sweeps (0: none).

    Example:
        >>> [filtered_particles(options, 16, 4) for options in ({}, {"rounds": 5}, {"rounds": 7})]
        [12, 10, 0]

    """
    rounds = options.get("rounds", 1)
    sweep = max(0, budget - pilots) // rounds
    return sweep * rounds if rounds == 1 or sweep > options.get("reference_particles", 1) else 0


PARTICLE_FILTERING = StrategySpec(
    name="particle_filtering",
    description="Particle filtering: N particles, each step resampled in proportion to the PRM's scores.",
    config=ParticleFilteringConfig,
    build=build_particle_filtering_graph,
    needs_prm=True,
    family="search",
    routed_n=filtered_particles,
)
