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

The last iteration writes to the end. The search stops when no particle is active or at
``max_iterations``; the answer is the weighted vote over the final population's finished
particles (``selection="weighted"``, each particle weighted by its score, copies counting as
often as they were drawn) or its best particle (``"best"``). Resampling draws from a random stream
seeded per iteration (:mod:`langchain_ttc.core.seeds`), so a seeded run is reproducible. Particle
Gibbs (several sweeps with a reference particle) is not implemented.

Example:
    >>> graph = create_particle_filtering_graph(policy, prm, n=8, resampling_temperature=1.0)  # doctest: +SKIP

"""

from __future__ import annotations

import random
from typing import Any, Literal

from langgraph.types import Checkpointer
from pydantic import Field

from langchain_ttc.core.search import Beam, particle_weights, resample
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies.common import StrategyGraph, config_of
from langchain_ttc.strategies.config import Aggregation, Selection, StepSearchConfig, validated
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


class ParticleFilteringConfig(StepSearchConfig):
    """Particle filtering: ``n`` particles, resampled each step in proportion to their PRM scores."""

    resampling_temperature: float = Field(
        1.0, gt=0.0, description="Softmax temperature of the particle weights (lower: greedier)."
    )
    resampling: Resampling = Field("multinomial", description="How particles are drawn: multinomial or systematic.")


def create_particle_filtering_graph(
    policy: PolicyEngine,
    prm: PRMEngine,
    *,
    n: int,
    resampling_temperature: float = 1.0,
    resampling: Resampling = "multinomial",
    max_iterations: int = 40,
    lookahead: int = 0,
    step_delimiter: str = "\n\n",
    aggregation: Aggregation = "last",
    selection: Selection = "weighted",
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 2048,
    seed: int | None = None,
    system_prompt: str | None = None,
    record_tree: bool = False,
    checkpointer: Checkpointer = None,
    name: str = "particle_filtering",
) -> StrategyGraph:
    """Build the particle filtering graph: ``start``, then ``generate`` → ``score`` → ``prune`` in a loop, ``select``.

    Args:
        policy: The policy engine; it must continue partial assistant messages.
        prm: The PRM engine.
        n: Number of particles (the budget): steps written per iteration at most.
        resampling_temperature: Softmax temperature of the weights (> 0; 1 is the paper's).
        resampling: ``"multinomial"`` or ``"systematic"`` resampling.
        max_iterations: Most steps per solution; the last iteration writes to the end.
        lookahead: Greedy steps rolled out past each particle before scoring (0: none).
        step_delimiter: The stop string that ends a step.
        aggregation: How step scores become the score that weighs a particle.
        selection: ``"weighted"`` vote over the final finished particles (default), or the ``"best"`` one.
        temperature: Sampling temperature of the steps.
        top_p: Nucleus sampling mass.
        max_tokens: Most tokens per step; a particle cut off here is never resampled.
        seed: Base seed of sampling and resampling (each iteration its own stream).
        system_prompt: Optional system message put before the problem.
        record_tree: Return the whole search tree in ``result.metadata["tree"]``.
        checkpointer: Optional LangGraph checkpointer (a search can pause and resume).
        name: The compiled graph's name.

    Raises:
        ValueError: If ``n < 1``, ``resampling_temperature <= 0``, an unknown resampling, or another
            option is out of range.
        TypeError: If an engine has the wrong type or the policy cannot continue partial messages.

    """
    config = validated(
        ParticleFilteringConfig, n=n, resampling_temperature=resampling_temperature, resampling=resampling,
        max_iterations=max_iterations, lookahead=lookahead, step_delimiter=step_delimiter, aggregation=aggregation,
        selection=selection, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
        system_prompt=system_prompt, record_tree=record_tree,
    )  # fmt: skip
    return build_particle_filtering_graph(policy, prm, config, checkpointer=checkpointer, name=name)


def build_particle_filtering_graph(
    policy: PolicyEngine,
    prm: PRMEngine | None,
    config: ParticleFilteringConfig,
    *,
    checkpointer: Checkpointer = None,
    name: str = "particle_filtering",
) -> StrategyGraph:
    """The particle filtering graph for a validated config (the registry's builder)."""
    policy, prm = check_engines(policy, prm)
    # The first iteration writes n first steps from one empty root; later, one step per active particle.
    nodes = make_search_nodes(
        policy,
        prm,
        config,
        roots=lambda _: [Beam()],
        widths=lambda run, frontier: [run.n if b.parent is None else 1 for b in frontier],
    )

    def resample_node(state: SearchState) -> dict[str, Any]:
        run = config_of(state, ParticleFilteringConfig)
        population = beams_of(state, "candidates") + beams_of(state, "finished")
        scores = [None if b.truncated else b.score for b in population]
        weights = particle_weights(scores, run.resampling_temperature)
        truncated = [b for b in beams_of(state, "candidates") if b.truncated]
        if not any(weights):  # every particle truncated or unscored: the search ends with what it has
            return close_iteration(state, frontier=[], finished=beams_of(state, "finished"), truncated=truncated)
        rng = random.Random(derive_seed(run.seed, "resample", state["iteration"]))
        drawn = [population[i] for i in resample(weights, run.n, rng, method=run.resampling)]
        return close_iteration(
            state,
            frontier=[b for b in drawn if b.active],
            finished=[b for b in drawn if b.complete],
            truncated=beams_of(state, "truncated") + truncated,
        )

    def route(state: SearchState) -> Literal["generate", "select"]:
        done = not state["frontier"] or state["iteration"] >= config_of(state, ParticleFilteringConfig).max_iterations
        return "select" if done else "generate"

    return build_search_graph(nodes, prune=resample_node, route=route, checkpointer=checkpointer, name=name)


def filtered_particles(_options: dict[str, Any], budget: int, pilots: int) -> int:
    """A routed particle filter runs the particles the pilots leave (0: none)."""
    return max(0, budget - pilots)


PARTICLE_FILTERING = StrategySpec(
    name="particle_filtering",
    description="Particle filtering: N particles, each step resampled in proportion to the PRM's scores.",
    config=ParticleFilteringConfig,
    build=build_particle_filtering_graph,
    needs_prm=True,
    family="search",
    routed_n=filtered_particles,
)
