"""Final answers: ``\\boxed{...}`` extraction, equivalence, and grouping of equivalent answers.

In: solution texts and answers as strings. Out: the extracted answer (or ``None``), whether two
answers are mathematically equivalent (by ``math-verify``, with a fast exact-string path), and
groups of equivalent answers for voting. An :class:`AnswerKey` bundles extraction and equivalence;
the math key is the default and other answer kinds plug in.

``math-verify`` uses ``signal.alarm`` for its default timeouts, which raises outside the main thread
(LangGraph runs sync nodes in threads), so it is always called with its timeouts disabled.

Example:
    >>> extract_boxed("so the answer is \\\\boxed{\\\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> answers_equivalent("0.5", "\\\\frac{1}{2}")
    True

"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from langchain_ttc.core.types import ToolCall

_BOXED = ("\\boxed", "\\fbox")
_MAX_VERIFY_CHARS = 500
"""Longer answers are compared as strings: math-verify runs without a timeout, so bound its input."""

logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call with timeouts off


def extract_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` in ``text`` (nested braces allowed).

    ``\\boxed 5`` (a space, no braces) gives the word after the space (never a later ``{...}``).
    Returns ``None`` when there is no complete boxed expression.

    Example:
        >>> extract_boxed("\\\\boxed{1} then \\\\boxed{\\\\sqrt{2}}")
        '\\\\sqrt{2}'
        >>> extract_boxed("\\\\boxed 5. Check: {2}")
        '5'

    """
    start, marker = max((text.rfind(marker), marker) for marker in _BOXED)
    if start < 0:
        return None
    brace = start + len(marker)
    if text[brace : brace + 1] != "{":
        if not text[brace : brace + 1].isspace():
            return None
        words = text[brace:].split("$")[0].split()
        return words[0].rstrip(".,;") or None if words else None
    depth = 0
    for index in range(brace, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : index].strip()
    return None


@functools.lru_cache(maxsize=65536)
def _parse(answer: str) -> tuple[object, ...]:
    from math_verify import parse

    return tuple(parse(f"${answer}$", parsing_timeout=None))


def answers_equivalent(first: str, second: str) -> bool:
    """Whether two answers are mathematically equivalent (``math-verify``, timeouts off).

    Example:
        >>> answers_equivalent("2", "2.0"), answers_equivalent("2", "3")
        (True, False)

    """
    if first.strip() == second.strip():
        return True
    if max(len(first), len(second)) > _MAX_VERIFY_CHARS:
        return False
    from math_verify import verify

    gold, predicted = _parse(first), _parse(second)
    if not gold or not predicted:
        return False
    return bool(verify(list(gold), list(predicted), timeout_seconds=None))


@dataclass(frozen=True)
class AnswerKey:
    """What counts as a solution's answer and when two answers are the same: voting's only view of answers.

    The math key reads ``\\boxed{}`` and compares with math-verify; other answer kinds (tool calls,
    program outputs) plug in with their own pair of functions, without touching selection code.

    Attributes:
        name: Shown in results and errors.
        extract: A solution's text to its answer (``None``: no answer, the solution does not vote).
        equivalent: Whether two extracted answers are the same answer.
        read_tool_calls: A turn's tool calls to its answer; ``None`` (the default): the key reads the
            text only, whatever tools the turn called (see :mod:`langchain_ttc.core.tool_calls`).
        family: An answer's family: when set, the votes first pick the family with the most weight
            (for tool calls: act or reply), then the heaviest answer inside it.

    Example:
        >>> exact = AnswerKey(name="exact", extract=lambda text: text.strip() or None, equivalent=str.__eq__)
        >>> group_equivalent(["a", "b", "a"], key=exact)
        [[0, 2], [1]]

    """

    name: str
    extract: Callable[[str], str | None]
    equivalent: Callable[[str, str], bool]
    read_tool_calls: Callable[[Sequence[ToolCall]], str | None] | None = None
    family: Callable[[str], str] | None = None

    @property
    def reads_tool_calls(self) -> bool:
        """Whether the key votes over tool calls (a tool-calling facade needs one that does)."""
        return self.read_tool_calls is not None

    def answer_of(self, text: str, tool_calls: Sequence[ToolCall] = ()) -> str | None:
        """The answer of a solution (or an assistant turn) with this text and these tool calls.

        Example:
            >>> MATH_ANSWERS.answer_of("so \\\\boxed{4}")
            '4'

        """
        if tool_calls and self.read_tool_calls is not None:
            return self.read_tool_calls(tool_calls)
        return self.extract(text)


MATH_ANSWERS = AnswerKey(name="math", extract=extract_boxed, equivalent=answers_equivalent)
"""The default key: the last ``\\boxed{}`` of a solution, compared by mathematical equivalence."""


def group_equivalent(answers: Sequence[str | None], *, key: AnswerKey = MATH_ANSWERS) -> list[list[int]]:
    """Group indices of equivalent answers (by ``key``); ``None`` answers get no group.

    Groups are in order of first appearance; each group lists its indices in increasing order.

    Example:
        >>> group_equivalent(["1", "2", "1.0", None])
        [[0, 2], [1]]

    """
    groups: list[list[int]] = []
    representatives: list[str] = []
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        for group, representative in zip(groups, representatives, strict=True):
            if key.equivalent(representative, answer):
                group.append(index)
                break
        else:
            groups.append([index])
            representatives.append(answer)
    return groups
