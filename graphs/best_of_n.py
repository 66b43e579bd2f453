"""LangGraph Studio entry point: best-of-N on the shipped Arith policy and PRM (set models in the context)."""

from langchain_ttc import create_best_of_n_graph
from langchain_ttc.engines.loading import load_policy, load_prm

graph = create_best_of_n_graph(load_policy("arith:small"), load_prm("arith:prm"), n=8, max_tokens=256, name="best_of_n")
