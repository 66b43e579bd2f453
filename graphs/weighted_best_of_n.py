"""LangGraph Studio entry point: weighted best-of-N on the shipped Arith policy and PRM."""

from langchain_ttc import create_weighted_best_of_n_graph
from langchain_ttc.engines.loading import load_policy, load_prm

graph = create_weighted_best_of_n_graph(
    load_policy("arith:small"), load_prm("arith:prm"), n=8, max_tokens=256, name="weighted_best_of_n"
)
