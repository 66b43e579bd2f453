"""The Arith world: an offline task with real trained checkpoints (see :mod:`.problems`)."""

from langchain_ttc.arith.problems import (
    ArithProblem,
    check_steps,
    make_problems,
    split_steps,
)

__all__ = ["ArithProblem", "check_steps", "make_problems", "split_steps"]
