"""LangGraph Studio entry point: best-of-N on the configured policy and PRM."""

from langchain_ttc import create_best_of_n_graph
from langchain_ttc.engines.settings import load_engine_settings

settings = load_engine_settings()  # TTC_POLICY_* / TTC_PRM_* / TTC_CONFIG; default: offline Arith

graph = create_best_of_n_graph(settings.load_policy(), settings.load_prm(), n=8, max_tokens=256, name="best_of_n")
