"""LangGraph Studio entry point: diverse verifier tree search on the configured policy and PRM."""

from langchain_ttc import create_dvts_graph
from langchain_ttc.engines.settings import load_engine_settings

settings = load_engine_settings()  # TTC_POLICY_* / TTC_PRM_* / TTC_CONFIG; default: offline Arith

graph = create_dvts_graph(settings.load_policy(), settings.load_prm(), n=8, beam_width=2, max_tokens=64, name="dvts")
