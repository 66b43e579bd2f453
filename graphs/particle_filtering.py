"""LangGraph Studio entry point: particle filtering on the shipped Arith policy and PRM."""

from langchain_ttc import create_particle_filtering_graph
from langchain_ttc.engines.loading import load_policy, load_prm

graph = create_particle_filtering_graph(
    load_policy("arith:small"), load_prm("arith:prm"), n=8, max_tokens=64, name="particle_filtering"
)
