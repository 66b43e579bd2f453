"""LangGraph Studio entry point: the compute-optimal router (shipped Arith table) on the configured policy and PRM.

The context's ``n`` is the budget: one of the table's (4, 16 or 64).
"""

from langchain_ttc import create_compute_optimal_graph
from langchain_ttc.engines.settings import load_engine_settings

settings = load_engine_settings()  # TTC_POLICY_* / TTC_PRM_* / TTC_CONFIG; default: offline Arith

graph = create_compute_optimal_graph(
    settings.load_policy(), settings.load_prm(), budget=16, max_tokens=256, name="compute_optimal"
)
