"""LangGraph Studio entry point: a knockout tournament of pairwise comparisons by the policy as judge."""

from langchain_ttc.engines.settings import load_engine_settings
from langchain_ttc.strategies import create_tournament_graph

settings = load_engine_settings()  # TTC_POLICY_* / TTC_PRM_* / TTC_CONFIG; default: offline Arith

graph = create_tournament_graph(settings.load_policy(), n=8, max_tokens=256, name="tournament")
