"""The Arith world: an offline task with real trained checkpoints (see :mod:`.problems`).

Importing it registers the ``arith:`` model alias (``arith:small``, ``arith:large``, ``arith:prm``)
with the engines' loader, so ``load_policy("arith:small")`` finds the shipped checkpoints.
"""

from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.arith.problems import (
    ArithProblem,
    check_steps,
    make_problems,
    split_steps,
)
from langchain_ttc.engines.references import register_model_alias

register_model_alias("arith:", arith_checkpoint)

__all__ = ["ArithProblem", "check_steps", "make_problems", "split_steps"]
