"""Prompts of the sequential strategies (self-refinement), kept in one place.

In: a problem, a solution's steps and a critique. Out: the chat messages sent to the policy (or a
critic) for a critique or a revision. Override them per graph with the factory's ``prompts=``.

Example:
    >>> messages = critique_messages("What is 2+2?", ["2+2=5.", "The answer is \\\\boxed{5}."])
    >>> "Step 1: 2+2=5." in messages[-1]["content"]
    True

"""

from __future__ import annotations

from dataclasses import dataclass

from langchain_ttc.core.types import Message

CRITIQUE_PROMPT = (
    "Check the solution below step by step. If a step is wrong, reply with the first wrong step as "
    "'Step K is wrong: <reason>'. If every step is right, reply 'No error.'\n\n"
    "Problem: {problem}\n\nSolution:\n{numbered_steps}"
)
REVISION_PROMPT = (
    "Feedback on your solution: {critique}\n\n"
    "Write a corrected solution from the start, step by step, ending with the answer in \\boxed{{}}."
)


@dataclass(frozen=True)
class RefinePrompts:
    """The critique and revision prompts (``str.format`` templates)."""

    critique: str = CRITIQUE_PROMPT
    revision: str = REVISION_PROMPT


def numbered(steps: list[str]) -> str:
    """Steps as ``Step 1: ...`` lines."""
    return "\n".join(f"Step {i + 1}: {step}" for i, step in enumerate(steps))


def critique_messages(problem: str, steps: list[str], prompts: RefinePrompts | None = None) -> list[Message]:
    """The conversation asking a critic to find the first wrong step."""
    template = (prompts or RefinePrompts()).critique
    return [{"role": "user", "content": template.format(problem=problem, numbered_steps=numbered(steps))}]


def revision_messages(
    conversation: list[Message], solution: str, critique: str, prompts: RefinePrompts | None = None
) -> list[Message]:
    """The conversation asking the policy for a corrected solution (a new turn after its own answer)."""
    template = (prompts or RefinePrompts()).revision
    return [
        *conversation,
        {"role": "assistant", "content": solution},
        {"role": "user", "content": template.format(critique=critique)},
    ]
