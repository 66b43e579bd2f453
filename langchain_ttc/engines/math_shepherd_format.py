"""The Math-Shepherd PRM input format (pure text, no model).

In: a problem and its steps. Out: the text a Math-Shepherd PRM reads, the step tag after every step:
``"{problem} {step 1} ки\\n{step 2} ки"``. The PRM's score of step i is P("+") normalised over
{"+", "-"} read at the i-th step tag.

Example:
    >>> math_shepherd_text("What is 1+1?", ["1+1=2. The answer is \\\\boxed{2}."])
    'What is 1+1? 1+1=2. The answer is \\\\boxed{2}. ки'

"""

from __future__ import annotations

DEFAULT_STEP_TAG = "ки"
DEFAULT_GOOD_TOKEN = "+"
DEFAULT_BAD_TOKEN = "-"


def math_shepherd_text(problem: str, steps: list[str], step_tag: str = DEFAULT_STEP_TAG) -> str:
    """Join a problem and its steps with the step tag after each step."""
    body = "\n".join(f"{step.strip().replace(step_tag, '')} {step_tag}" for step in steps)
    return f"{problem.strip()} {body}"
