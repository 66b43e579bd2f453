"""Transitional re-exports of :mod:`.driver`, :mod:`.graphs` and :mod:`.generation`."""

from langchain_ttc.strategies.driver import Call, Calls, as_node, call, call_batch, emit, run_calls  # noqa: F401
from langchain_ttc.strategies.generation import (  # noqa: F401
    check_policy,
    check_prm,
    conversation_from_input,
    reaggregated,
    score_candidates,
)
from langchain_ttc.strategies.graphs import StrategyGraph, StrategyInput, StrategyOutput, usage_of  # noqa: F401
