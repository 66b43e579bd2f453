"""Prompts, kept in one place: the policy's system prompt presets and the self-refinement prompts.

In: a problem, a solution's steps and a critique (self-refinement), or a ``system_prompt`` setting.
Out: the chat messages sent to the policy (or a critic) for a critique or a revision (override them
per graph with the factory's ``prompts=``), and the system prompt text a setting names.

**System prompt presets.** Our default system prompt is none: the problem is the only message. The
study's policy was prompted with search-and-learn's math system prompt, so a run that reproduces it
passes ``system_prompt="preset:search-and-learn"`` (:data:`SYSTEM_PROMPTS`,
:func:`resolve_system_prompt`). The rule that turns a setting into text cannot collide with a real
prompt: only a value that is exactly ``preset:`` followed by a name of letters, digits, ``.``,
``_`` or ``-`` (no whitespace) names a preset; every other string, ``"preset: be brief"``
included, is the prompt itself and passes through unchanged. A bare name such as
``"search-and-learn"`` is a prompt too, never a preset.

**What the model sees (the chat-template rule the presets rely on).** A preset is sent as the system
message and rendered by the policy's chat template. search-and-learn renders every conversation with
its own ``custom_chat_template`` (``src/sal/config.py``): a Llama 3.1 template that trims the
system message (``messages[0]['content']|trim``), writes ``"Cutting Knowledge Date: December
2023\\nToday Date: ..."`` before it, does *not* trim the user and assistant messages, and has no
``bos_token`` (vLLM adds it when it tokenizes the prompt). Meta's own Llama 3.x templates trim every
message (``message['content'] | trim``): rendered with ``continue_final_message``, a partial
assistant text loses its trailing ``"\\n\\n"``, the model writes the delimiter at once and the step
comes back empty. Our engines render with the model's own template and put back the whitespace it
trimmed (:func:`langchain_ttc.engines.chat_template.render_prompt`, on every backend), which is what
the reference's untrimmed template gives. The presets have no leading or trailing whitespace, so a
template that trims the system message sends them unchanged.

Example:
    >>> resolve_system_prompt("preset:search-and-learn").startswith("Solve the following math problem")
    True
    >>> resolve_system_prompt("You are terse.")
    'You are terse.'
    >>> messages = critique_messages("What is 2+2?", ["2+2=5.", "The answer is \\\\boxed{5}."])
    >>> "Step 1: 2+2=5." in messages[-1]["content"]
    True

"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

from langchain_ttc.core.types import Message

SEARCH_AND_LEARN_SYSTEM_PROMPT = (
    "Solve the following math problem efficiently and clearly:\n\n"
    "- For simple problems (2 steps or fewer):\nProvide a concise solution with minimal explanation.\n\n"
    "- For complex problems (3 steps or more):\nUse this step-by-step format:\n\n"
    "## Step 1: [Concise description]\n[Brief explanation and calculations]\n\n"
    "## Step 2: [Concise description]\n[Brief explanation and calculations]\n\n"
    "...\n\n"
    "Regardless of the approach, always conclude with:\n\n"
    "Therefore, the final answer is: $\\boxed{answer}$. I hope it is correct.\n\n"
    "Where [answer] is just the final number or expression that solves the problem."
)
"""search-and-learn's math system prompt, verbatim (``Config.system_prompt`` in ``src/sal/config.py``).

Quoted, not paraphrased: the study's policies (Llama 3.2 1B and 3B Instruct) were prompted with exactly
this text, its ``\\n\\n`` step format is what the step delimiter and the PRMs' step splitting assume,
and its closing sentence asks for the ``\\boxed{}`` answer the extraction reads. A reproduction
changes none of it.
"""

QWEN_MATH_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
"""The Qwen2.5-Math chain-of-thought system prompt (also the one the Qwen2.5-Math-PRM card puts before the problem)."""

SYSTEM_PROMPTS: MappingProxyType[str, str] = MappingProxyType(
    {"search-and-learn": SEARCH_AND_LEARN_SYSTEM_PROMPT, "qwen-math": QWEN_MATH_SYSTEM_PROMPT}
)
"""Named system prompts: pass ``system_prompt="preset:<name>"`` to use one (see :func:`resolve_system_prompt`)."""

PRESET_PREFIX = "preset:"
_PRESET = re.compile(r"preset:([A-Za-z0-9._-]+)")


def resolve_system_prompt(value: str | None, *, parameter: str = "system_prompt") -> str | None:
    """The system prompt a setting means: a preset's text for ``"preset:<name>"``, else ``value`` unchanged.

    Only a value that is exactly ``preset:`` and a name without whitespace names a preset, so no
    real prompt is mistaken for one; ``None`` (no system prompt) stays ``None``.

    Args:
        value: The setting: a prompt's text, ``"preset:<name>"``, or ``None``.
        parameter: The setting's name, for the error message.

    Raises:
        ValueError: If ``value`` names a preset that does not exist (the message lists the known ones).

    Example:
        >>> resolve_system_prompt("preset:qwen-math")
        'Please reason step by step, and put your final answer within \\\\boxed{}.'
        >>> resolve_system_prompt("preset: answer briefly") is not None  # not a preset name: a prompt
        True
        >>> resolve_system_prompt("preset:nope")
        Traceback (most recent call last):
        ...
        ValueError: system_prompt='preset:nope' names no known preset; pass one of 'preset:qwen-math', \
'preset:search-and-learn', or the prompt's own text.

    """
    if value is None:
        return None
    match = _PRESET.fullmatch(value)
    if match is None:
        return value
    name = match.group(1)
    if name not in SYSTEM_PROMPTS:
        known = ", ".join(repr(PRESET_PREFIX + key) for key in sorted(SYSTEM_PROMPTS))
        raise ValueError(f"{parameter}={value!r} names no known preset; pass one of {known}, or the prompt's own text.")
    return SYSTEM_PROMPTS[name]


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
