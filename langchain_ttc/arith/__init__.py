"""The Arith world: an offline task with real trained checkpoints (see :mod:`.problems`).

The composition root (:mod:`langchain_ttc.wiring`) names its checkpoints for the engines' loader
(``arith:small``, ``arith:large``, ``arith:prm``, ``arith:prm-in-distribution``).
"""

from langchain_ttc.arith.problems import (
    ArithProblem,
    check_steps,
    make_problems,
    split_steps,
)

__all__ = ["ArithProblem", "check_steps", "make_problems", "split_steps"]
