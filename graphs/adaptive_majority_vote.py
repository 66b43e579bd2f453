"""LangGraph Studio entry point: adaptive majority voting (waves until the vote is settled) on the configured policy."""

from langchain_ttc.engines.settings import load_engine_settings
from langchain_ttc.strategies import create_adaptive_majority_vote_graph

settings = load_engine_settings()  # TTC_POLICY_* / TTC_PRM_* / TTC_CONFIG; default: offline Arith

graph = create_adaptive_majority_vote_graph(settings.load_policy(), n=16, max_tokens=256, name="adaptive_majority_vote")
