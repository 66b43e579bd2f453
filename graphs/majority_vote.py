"""LangGraph Studio entry point: majority voting on the shipped Arith policy (set models in the context)."""

from langchain_ttc import create_majority_vote_graph
from langchain_ttc.engines.loading import load_policy

graph = create_majority_vote_graph(load_policy("arith:small"), n=8, max_tokens=256, name="majority_vote")
