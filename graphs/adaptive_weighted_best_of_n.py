"""LangGraph Studio entry point: adaptive weighted best-of-N (waves until the vote is settled) on the policy and PRM."""

from langchain_ttc.engines.settings import load_engine_settings
from langchain_ttc.strategies import create_adaptive_weighted_best_of_n_graph

settings = load_engine_settings()  # TTC_POLICY_* / TTC_PRM_* / TTC_CONFIG; default: offline Arith

graph = create_adaptive_weighted_best_of_n_graph(
    settings.load_policy(), settings.load_prm(), n=16, max_tokens=256, name="adaptive_weighted_best_of_n"
)
