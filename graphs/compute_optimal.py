"""LangGraph Studio entry point: the compute-optimal router (shipped Arith table) on the Arith policy and PRM.

The context's ``n`` is the budget: one of the table's (4, 16 or 64).
"""

from langchain_ttc import create_compute_optimal_graph
from langchain_ttc.engines.loading import load_policy, load_prm

graph = create_compute_optimal_graph(
    load_policy("arith:small"), load_prm("arith:prm"), budget=16, max_tokens=256, name="compute_optimal"
)
