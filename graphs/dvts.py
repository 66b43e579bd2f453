"""LangGraph Studio entry point: diverse verifier tree search on the shipped Arith policy and PRM."""

from langchain_ttc import create_dvts_graph
from langchain_ttc.engines.loading import load_policy, load_prm

graph = create_dvts_graph(
    load_policy("arith:small"), load_prm("arith:prm"), n=8, beam_width=2, max_tokens=64, name="dvts"
)
