"""LangGraph Studio entry point: majority voting on the configured policy."""

from langchain_ttc import create_majority_vote_graph
from langchain_ttc.engines.settings import load_engine_settings

settings = load_engine_settings()  # TTC_POLICY_* / TTC_PRM_* / TTC_CONFIG; default: offline Arith

graph = create_majority_vote_graph(settings.load_policy(), n=8, max_tokens=256, name="majority_vote")
