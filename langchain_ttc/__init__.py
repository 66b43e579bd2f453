"""langchain-ttc: test-time compute scaling as LangGraph graphs for LangChain.

A policy engine writes solutions, a process reward model (PRM) scores their steps, and a strategy
graph spends the budget: majority voting, best-of-N, weighted best-of-N. Heavy backends (torch,
transformers) are imported only from :mod:`langchain_ttc.engines` submodules.

Example:
    >>> from langchain_ttc import create_majority_vote_graph, make_problems
    >>> make_problems(1, difficulty=2, seed=0)[0].answer
    '0'

"""

from langchain_ttc.arith import ArithProblem, check_steps, make_problems
from langchain_ttc.core.aggregation import AGGREGATIONS, aggregate
from langchain_ttc.core.answers import answers_equivalent, extract_boxed, group_equivalent
from langchain_ttc.core.tool_calls import TOOL_CALL_ANSWERS, tool_call_answers
from langchain_ttc.core.types import (
    AnswerGroup,
    Candidate,
    Completion,
    GenerationRequest,
    GenerationResult,
    ScoreRequest,
    StepScores,
    ToolCall,
    TTCResult,
    Usage,
)
from langchain_ttc.core.voting import Selection, best_of_n, majority_vote, weighted_best_of_n
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.strategies import (
    create_beam_search_graph,
    create_best_of_n_graph,
    create_compute_optimal_graph,
    create_dvts_graph,
    create_majority_vote_graph,
    create_particle_filtering_graph,
    create_self_refine_graph,
    create_weighted_best_of_n_graph,
)
from langchain_ttc.wiring import STRATEGIES, create_strategy_graph

__all__ = [
    "AGGREGATIONS",
    "STRATEGIES",
    "TOOL_CALL_ANSWERS",
    "AnswerGroup",
    "ArithProblem",
    "Candidate",
    "Completion",
    "GenerationRequest",
    "GenerationResult",
    "PRMEngine",
    "PolicyEngine",
    "ScoreRequest",
    "Selection",
    "StepScores",
    "TTCResult",
    "ToolCall",
    "Usage",
    "aggregate",
    "answers_equivalent",
    "best_of_n",
    "check_steps",
    "create_beam_search_graph",
    "create_best_of_n_graph",
    "create_compute_optimal_graph",
    "create_dvts_graph",
    "create_majority_vote_graph",
    "create_particle_filtering_graph",
    "create_self_refine_graph",
    "create_strategy_graph",
    "create_weighted_best_of_n_graph",
    "extract_boxed",
    "group_equivalent",
    "majority_vote",
    "make_problems",
    "tool_call_answers",
    "weighted_best_of_n",
]
