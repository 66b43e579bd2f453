"""LangGraph Studio entry point: self-refinement on the configured policy, which critiques itself.

Two chains of up to two revisions; the critic is the policy's own self-verification (it re-derives
each step and flags the first one it does not reproduce).
"""

from langchain_ttc.engines.self_verification import SelfVerificationPRM
from langchain_ttc.engines.settings import load_engine_settings
from langchain_ttc.strategies.refine.self_refine import create_self_refine_graph

settings = load_engine_settings()  # TTC_POLICY_* / TTC_PRM_* / TTC_CONFIG; default: offline Arith

policy = settings.load_policy()
graph = create_self_refine_graph(
    policy, SelfVerificationPRM(policy), max_revisions=2, chains=2, max_tokens=256, name="self_refine"
)
