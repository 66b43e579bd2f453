"""Answers of assistant turns that may call tools: the answer key that votes over agent actions.

In: an assistant turn's text and its :class:`~langchain_ttc.core.types.ToolCall` objects. Out: its
answer as a string, so majority vote and weighted best-of-N pick among sampled tool calls exactly as
they pick among math answers:

- a turn that calls tools answers ``{"tool_calls":[{"args":{...},"name":"..."}, ...]}``: canonical
  JSON of its calls (keys sorted, no whitespace, ``1.0`` written ``1``; the calls of one turn sorted,
  so their order does not matter). Two turns are the same action when these strings are equal:
  the same tools with arguments equal as JSON values;
- a turn that calls no tool answers its reply, as ``reply_key`` reads it (by default the text with
  its whitespace collapsed; pass :data:`~langchain_ttc.core.answers.MATH_ANSWERS` for ``\\boxed{}``
  replies).

Acting and replying are two *families*: the vote first picks the family with the most weight
(votes, or summed scores), then the heaviest answer inside it, so five sampled replies that all
differ still outvote two identical tool calls (the agent's majority wanted to answer).

Example:
    >>> from langchain_ttc.core.types import ToolCall
    >>> TOOL_CALL_ANSWERS.answer_of("", [ToolCall(name="add", args={"b": 2.0, "a": 1})])
    '{"tool_calls":[{"args":{"a":1,"b":2},"name":"add"}]}'
    >>> TOOL_CALL_ANSWERS.answer_of("  It is   sunny. ")
    'It is sunny.'

"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_ttc.core.answers import AnswerKey
from langchain_ttc.core.types import ToolCall

TOOL_CALLS_FIELD = "tool_calls"
_PREFIX = '{"tool_calls":'
_EXACT_FLOAT = 2**53


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: keys sorted, no whitespace, integral numbers written as integers.

    A string is parsed first (tool arguments often arrive as JSON text), so formatting never matters.

    Example:
        >>> canonical_json('{ "b": [1.0, 2.5], "a": true }')
        '{"a":true,"b":[1,2.5]}'

    Raises:
        ValueError: If ``value`` is a string that is not JSON.

    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"arguments {value!r} are not JSON ({error.msg}).") from error
    return json.dumps(_normalised(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _normalised(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_FLOAT:
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _normalised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalised(v) for v in value]
    return str(value)


def tool_calls_answer(tool_calls: Sequence[ToolCall]) -> str:
    """The answer of a turn that calls these tools (canonical JSON; call ids and call order ignored).

    Example:
        >>> tool_calls_answer([ToolCall(name="b", id="1"), ToolCall(name="a", args={"x": "1"})])
        '{"tool_calls":[{"args":{"x":"1"},"name":"a"},{"args":{},"name":"b"}]}'

    """
    calls = sorted(canonical_json({"name": c.name, "args": c.args}) for c in tool_calls)
    return _PREFIX + "[" + ",".join(calls) + "]}"


def parse_tool_calls_answer(answer: str) -> list[ToolCall] | None:
    """The tool calls an answer stands for, or ``None`` when the answer is a reply.

    Example:
        >>> parse_tool_calls_answer('{"tool_calls":[{"args":{"a":1},"name":"add"}]}')[0].name
        'add'
        >>> parse_tool_calls_answer("Paris") is None
        True

    """
    if not is_tool_calls_answer(answer):
        return None
    return [ToolCall.model_validate(call) for call in json.loads(answer)[TOOL_CALLS_FIELD]]


def is_tool_calls_answer(answer: str) -> bool:
    """Whether an answer of :data:`TOOL_CALL_ANSWERS` is an action (tool calls) rather than a reply."""
    return answer.startswith(_PREFIX)


def render_tool_call(call: ToolCall) -> str:
    """A tool call as one line of text, the step a reward model or a judge reads for it.

    Example:
        >>> render_tool_call(ToolCall(name="add", args={"a": 1}))
        'Tool call: add {"a": 1}'

    """
    return f"Tool call: {call.name} {json.dumps(call.args, ensure_ascii=False, sort_keys=True)}"


def openai_tool_call(call: ToolCall) -> dict[str, Any]:
    """A tool call in the OpenAI chat format (``arguments`` as JSON text), as chat messages carry it.

    Example:
        >>> openai_tool_call(ToolCall(name="add", args={"a": 1}, id="c1"))["function"]
        {'name': 'add', 'arguments': '{"a": 1}'}

    """
    function = {"name": call.name, "arguments": json.dumps(call.args, ensure_ascii=False)}
    return {"id": call.id, "type": "function", "function": function}


def tool_fields(message: Any) -> dict[str, Any]:
    """The tool fields of a chat message object as plain message data (read by attribute, no import).

    An assistant turn's ``tool_calls`` (LangChain's ``{"name", "args", "id"}``) become OpenAI-format
    calls; a tool result's ``tool_call_id`` is kept. Other messages give ``{}``.

    Example:
        >>> from types import SimpleNamespace
        >>> tool_fields(SimpleNamespace(tool_call_id="c1"))
        {'tool_call_id': 'c1'}

    """
    fields: dict[str, Any] = {}
    calls = getattr(message, "tool_calls", None)
    if calls:
        fields["tool_calls"] = [
            openai_tool_call(ToolCall(name=c["name"], args=c.get("args") or {}, id=c.get("id"))) for c in calls
        ]
    call_id = getattr(message, "tool_call_id", None)
    if call_id:
        fields["tool_call_id"] = call_id
    return fields


def _collapsed(text: str) -> str | None:
    return " ".join(text.split()) or None


REPLY_ANSWERS = AnswerKey(name="reply", extract=_collapsed, equivalent=str.__eq__)
"""Replies compared as text with their whitespace collapsed (an empty reply has no answer)."""


def tool_call_answers(reply_key: AnswerKey = REPLY_ANSWERS, *, name: str = "tool_calls") -> AnswerKey:
    """An answer key for assistant turns: tool calls compared as canonical JSON, replies by ``reply_key``.

    Args:
        reply_key: How a turn that calls no tool is read and compared (text by default).
        name: The key's name.

    Raises:
        TypeError: If ``reply_key`` is not an :class:`~langchain_ttc.core.answers.AnswerKey`.

    Example:
        >>> from langchain_ttc.core.answers import MATH_ANSWERS
        >>> key = tool_call_answers(MATH_ANSWERS)
        >>> key.answer_of("so \\\\boxed{4}")
        '4'

    """
    if not isinstance(reply_key, AnswerKey):
        raise TypeError(f"reply_key={reply_key!r} is not an AnswerKey; pass one, for example MATH_ANSWERS.")

    def extract(text: str) -> str | None:
        answer = reply_key.extract(text)
        return None if answer is not None and is_tool_calls_answer(answer) else answer  # never mistaken for an action

    def equivalent(first: str, second: str) -> bool:
        first_acts, second_acts = is_tool_calls_answer(first), is_tool_calls_answer(second)
        if first_acts or second_acts:
            return first == second
        return reply_key.equivalent(first, second)

    def family(answer: str) -> str:
        return "act" if is_tool_calls_answer(answer) else "reply"

    return AnswerKey(
        name=name, extract=extract, equivalent=equivalent, read_tool_calls=tool_calls_answer, family=family
    )


TOOL_CALL_ANSWERS = tool_call_answers()
"""Tool calls (same tools, arguments equal as JSON) or, when no tool is called, the reply text."""
