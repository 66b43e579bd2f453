"""LangGraph Studio entry point: universal self-consistency (the policy names its most consistent sample)."""

from langchain_ttc.engines.settings import load_engine_settings
from langchain_ttc.strategies import create_usc_graph

settings = load_engine_settings()  # TTC_POLICY_* / TTC_PRM_* / TTC_CONFIG; default: offline Arith

graph = create_usc_graph(settings.load_policy(), n=8, max_tokens=256, name="usc")
