"""Final answers: extraction, equivalence, and grouping of equivalent answers (the answer keys).

In: solution texts and answers as strings. Out: the extracted answer (or ``None``), whether two
answers are the same answer, and groups of equivalent answers for voting. An :class:`AnswerKey`
bundles extraction and equivalence; other answer kinds (tool calls) plug in the same way.

Two math keys:

- :data:`MATH_ANSWERS` (the default): the last complete ``\\boxed{...}`` of a solution, nothing else;
  two answers are the same when ``math-verify`` says they are equivalent (``0.5``, ``1/2`` and
  ``\\frac{1}{2}`` are one answer; a fast exact-string path first).
- :data:`REFERENCE_MATH_ANSWERS`: the answer as huggingface/search-and-learn reads it
  (``extract_answer(text, "math")`` of ``src/sal/utils/qwen_math_parser.py``, adapted from
  Qwen2.5-Math): ``final answer is $...$. I hope``, else the last ``boxed`` (an unclosed brace
  takes the rest of the text), else the text after the last ``the answer is`` / ``The answer is``,
  else after ``final answer is``, else the last number; then normalised (:func:`normalize_answer`,
  its ``strip_string``). Two answers are the same when their canonical forms are equal
  (:func:`canonical_form`), the answer parsed from LaTeX, simplified and printed back as LaTeX, as
  ``memoized_canonical_form`` of ``src/sal/utils/math.py`` does with ``latex2sympy2``. That package
  is not installed here (it pins an ANTLR runtime math-verify cannot share): we parse with
  ``latex2sympy2_extended`` (installed with math-verify) and ``sympy.simplify``, read decimals as
  exact fractions and fall back to the normalised string for pairs, intervals, sets and truth
  values, as ``latex2sympy2`` does (checked side by side with sal's own parser on about 100 answers
  and solution texts: the same answers and groups but for the cases listed below). ``0.5``,
  ``1/2`` and ``\\frac{2}{4}`` are one answer under both keys.

Why the strict key is the default: (1) the fallbacks give an answer to a solution that never states
one (the last number of an unfinished argument, or of a step that merely mentions a number), so
solutions that did not answer still vote, and a weighted vote sums their scores; (2) canonical strings
split one answer written two ways into two groups that split its votes, where equivalence keeps
them together: ``\\{1,2\\}`` and ``\\{2,1\\}``, ``(\\frac{1}{2},3)`` and ``(0.5,3)``,
``(x+1)^2`` and ``x^2+2x+1``, ``10\\%`` and ``0.1``; (3) our evaluation grades by equivalence
(:func:`answers_equivalent`), so voting by the same rule picks what is graded. Use
:data:`REFERENCE_MATH_ANSWERS` (by name, a strategy's ``answers="reference-math"``: the names are
:func:`langchain_ttc.strategies.config.answer_key_named`'s) to reproduce the study's votes.
Where it still differs from sal: a text with no answer at all gives ``None`` (it does not vote),
where sal votes with the empty string;
the normalisation leaves out two of ``strip_string``'s rules, MathQA's list of unit words
(``"5 cm"`` stays ``"5cm"``, ``"a and b"`` stays ``"ab"``) and spelled-out numbers
(``word2number``, not installed); and the two LaTeX parsers disagree on a few inputs (``1\\frac{1}{2}``
is ``3/2`` here and ``1/2`` for ``latex2sympy2``; ``3i`` and words such as ``Monday`` parse here and
fall back to the string there).

Typed answers for tasks that are not math (each a key like the others, so majority voting and
weighted best-of-N take them as they are):

- :data:`MULTIPLE_CHOICE_ANSWERS` (:func:`multiple_choice_answers` for other letters): the letter a
  reply chooses (``\\boxed{C}``, ``the answer is (C)``, ``Answer: C``, or a reply that is one letter);
- :data:`NUMBER_ANSWERS`: a plain number (GSM8K's ``#### 42``, ``\\boxed{42}``, ``the answer is $1,200.``),
  compared as exact rationals (``42``, ``42.0`` and ``84/2`` are one answer);
- :data:`SHORT_ANSWERS` (:func:`short_answers`): a short string, normalised as SQuAD does (case,
  punctuation, articles and spacing ignored: ``The Eiffel Tower.`` and ``eiffel tower`` are one answer);
- :func:`schema_answers`: a pydantic model; each reply's JSON object (or the arguments of the tool it
  called) is validated into the model and equal objects vote together. A reply that fails validation
  has no answer, so it does not vote; :func:`invalid_answers` reports why, candidate by candidate.

None of them falls back to "the last number" or "the last capital letter": a reply that states no
answer does not vote.

``math-verify`` and sal's canonical form use ``signal.alarm`` for their timeouts, which raises
outside the main thread (LangGraph runs sync nodes in threads), so both run here without one, on
inputs of bounded length.

Example:
    >>> extract_boxed("so the answer is \\\\boxed{\\\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> answers_equivalent("0.5", "\\\\frac{1}{2}")
    True
    >>> reference_math_answer("3+4 = 7, and 7*2 = 14."), reference_math_answer("The answer is 1/2.")
    ('14', '\\\\frac{1}{2}')

"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ValidationError

from langchain_ttc.core.types import Candidate, ToolCall

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


# ---- the reference's key: search-and-learn's Qwen2.5-Math parser and canonical forms ----

_MAX_CANONICAL_CHARS = 200
"""Longer answers keep their normalised string as canonical form: sympy runs without a timeout here."""
_LAST_NUMBER = re.compile(r"-?\d*\.?\d+")


def _after_last_boxed(text: str) -> str:
    """What follows the last ``boxed``: its braced group (to the end if unclosed), else the text up to a ``$``."""
    tail = text.split("boxed")[-1]
    if not tail.startswith("{"):
        return tail.split("$")[0].strip()
    depth, end = 0, len(tail)
    for index, char in enumerate(tail):
        depth += (char == "{") - (char == "}")
        if depth == 0:
            end = index
            break
    return tail[1:end]


def _raw_reference_answer(text: str) -> str:
    """The answer text before normalisation, by the parser's fallbacks in its order."""
    if "final answer is $" in text and "$. I hope" in text:
        return text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    if "boxed" in text:
        return _after_last_boxed(text)
    for phrase in ("he answer is", "final answer is"):  # "The answer is" and "the answer is"
        if phrase in text:
            return text.split(phrase)[-1].strip()
    if "答案是" in text:
        return text.split("答案是")[1].strip().split("\n\n")[0].strip()
    numbers = _LAST_NUMBER.findall(text.replace(",", ""))
    return numbers[-1] if numbers else ""


def _braced_fracs(answer: str) -> str:
    """``\\frac12`` to ``\\frac{1}{2}``, ``\\frac1{72}`` to ``\\frac{1}{72}`` (braced arguments are kept)."""
    head, *rest = answer.split("\\frac")
    out = head
    for part in rest:
        out += "\\frac"
        if part.startswith("{"):
            out += part
        elif len(part) < 2:
            return answer
        elif part[1] == "{":
            out += "{" + part[0] + "}" + part[1:]
        else:
            out += "{" + part[0] + "}{" + part[1] + "}" + part[2:]
    return out


def _slash_fraction(answer: str) -> str:
    """``a/b`` of two integers (or square roots) to ``\\frac{a}{b}``; anything else is kept."""
    parts = answer.split("/")
    if len(parts) != 2:
        return answer
    try:
        first, second = (part if "sqrt" in part else int(part) for part in parts)
    except ValueError:
        return answer
    return f"\\frac{{{first}}}{{{second}}}" if f"{first}/{second}" == answer else answer


def normalize_answer(answer: str) -> str:
    """An extracted answer normalised as sal's ``strip_string`` does (``data_name="math"``), but two of its rules.

    Drops line breaks, a final period, ``\\!``, ``\\left``/``\\right``, a trailing ``\\text{unit}``,
    degrees, dollar signs, ``\\text{}`` wrappers, ``x=``-style prefixes, percent signs, trailing
    ``.0``, spaces; rewrites ``tfrac``/``dfrac``, ``\\leq``-style relations, arrays and bmatrices,
    ``\\emptyset``, ``inf``; braces ``\\sqrt2`` and ``\\frac12``; turns ``a/b`` of integers into
    ``\\frac{a}{b}``; keeps the right side of a short ``k = ...``. Left out: removing MathQA's unit
    words (``"5 cm"`` becomes ``"5cm"``, not ``"5"``) and reading spelled-out numbers (``"five"``).

    Example:
        >>> normalize_answer("x = \\\\dfrac{3}{4}."), normalize_answer("10.0"), normalize_answer("\\\\$5\\\\%")
        ('\\\\frac{3}{4}', '10', '5')

    """
    s = str(answer).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    without_unit = re.sub(r"\\text\{.*?\}$", "", s).strip()
    if without_unit:
        s = without_unit
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox\{.*?\}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _slash_fraction(_braced_fracs(s))


def reference_math_answer(text: str) -> str | None:
    """A solution's answer as search-and-learn reads it (Qwen2.5-Math's parser); ``None`` when it finds none.

    The fallbacks, in order: ``final answer is $...$. I hope``; the last ``boxed``; the text after the
    last ``the answer is``; after ``final answer is``; the last number. The result is normalised
    (:func:`normalize_answer`). The Math-Shepherd step tag ``ки`` is removed first, as sal does.

    Example:
        >>> reference_math_answer("First 2+2=4.\\n\\nThe answer is: 4")
        '4'
        >>> reference_math_answer("So \\\\boxed{\\\\dfrac12}. Check: 3"), reference_math_answer("no number")
        ('\\\\frac{1}{2}', None)

    """
    raw = _raw_reference_answer(text.replace("ки", ""))
    raw = re.sub(r"\n\s*", "", raw)
    raw = raw.removeprefix(":").removesuffix(".").removesuffix("/")
    return normalize_answer(raw) or None


@functools.lru_cache(maxsize=65536)
def canonical_form(answer: str) -> str:
    """The canonical form sal groups answers by: parsed from LaTeX, simplified, printed as LaTeX.

    Parsed with ``latex2sympy2_extended`` (sal uses ``latex2sympy2``, not installed here), decimals read
    as exact fractions as ``latex2sympy2`` reads them. When the parse or the simplification fails, or
    gives a pair, an interval, a set or a truth value (which ``latex2sympy2`` cannot read), or the
    answer is longer than 200 characters, the canonical form is the normalised answer itself (sal's
    fallback on errors and timeouts).

    Example:
        >>> canonical_form("\\\\frac{2}{4}"), canonical_form("0.5"), canonical_form("\\\\sqrt{8}")
        ('\\\\frac{1}{2}', '\\\\frac{1}{2}', '2 \\\\sqrt{2}')

    """
    fallback = normalize_answer(answer)
    if len(answer) > _MAX_CANONICAL_CHARS:
        return fallback
    try:
        from latex2sympy2_extended import latex2sympy
        from latex2sympy2_extended.latex2sympy2 import ConversionConfig
        from sympy import Basic, Float, Rational, Set, Tuple, latex, simplify
        from sympy.logic.boolalg import BooleanAtom

        expression = latex2sympy(
            answer, normalization_config=None, conversion_config=ConversionConfig(lowercase_symbols=False)
        )
        if isinstance(expression, (tuple, Tuple, Set)):  # sal's parser fails on pairs, intervals and sets
            return fallback
        if isinstance(expression, Basic):  # sal's parser reads a decimal as an exact fraction: 0.5 is 1/2
            expression = expression.xreplace({f: Rational(str(f)) for f in expression.atoms(Float)})
        simplified = simplify(expression)
        if isinstance(simplified, (bool, BooleanAtom)):  # a membership or a relation that evaluated to a truth value
            return fallback
        return str(latex(simplified))
    except Exception:  # any parse or simplification error: sal's fallback
        return fallback


def same_canonical_form(first: str, second: str) -> bool:
    """Whether two answers have the same canonical form (:func:`canonical_form`): sal's grouping rule.

    Example:
        >>> same_canonical_form("0.5", "\\\\frac{1}{2}"), same_canonical_form("(x+1)^2", "x^2+2x+1")
        (True, False)

    """
    return first == second or canonical_form(first) == canonical_form(second)


REFERENCE_MATH_ANSWERS = AnswerKey(name="reference-math", extract=reference_math_answer, equivalent=same_canonical_form)
"""search-and-learn's answer key: Qwen2.5-Math's parser with its fallbacks, grouped by canonical form."""


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


# ---- typed answers: multiple choice, plain numbers, short strings, a pydantic schema ----

_FENCED_JSON = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)
_MAX_OBJECT_STARTS = 64
"""The most ``{`` positions :func:`find_json_object` tries (replies are bounded; so is the scan)."""


def _object_end(text: str, start: int) -> int | None:
    """The index after the ``}`` that closes the ``{`` at ``start`` (strings in quotes skipped), or ``None``."""
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            escaped, in_string = (not escaped and char == "\\"), escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def find_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a reply gives: the whole text, a fenced ```json block, or the first ``{...}`` that parses.

    Example:
        >>> find_json_object('Sure: ```json\\n{"city": "Paris"}\\n``` done')
        {'city': 'Paris'}
        >>> find_json_object('So \\\\boxed{5}, i.e. {"a": {"b": "}"}} and more'), find_json_object("no object")
        ({'a': {'b': '}'}}, None)

    """
    starts = [i for i, char in enumerate(text) if char == "{"][:_MAX_OBJECT_STARTS]
    spans = (text[i:end] for i in starts if (end := _object_end(text, i)) is not None)
    for candidate in itertools.chain([text.strip()], _FENCED_JSON.findall(text), spans):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


_ANSWER_MARKER = re.compile(r"(?:final\s+)?answer\s*(?:is|:)\s*:?\s*", re.IGNORECASE)


def _after_last_marker(text: str) -> str | None:
    """The rest of the line after the last ``answer is`` / ``answer:``, or ``None`` when there is no marker."""
    matches = list(_ANSWER_MARKER.finditer(text))
    if not matches:
        return None
    return text[matches[-1].end() :].split("\n", 1)[0].strip()


def multiple_choice_answer(text: str, letters: str = "ABCDEFGHIJ") -> str | None:
    """The option letter a reply chooses, or ``None`` when it names none of ``letters``.

    Read from, in order: the last ``\\boxed{C}``; the last ``the answer is (C)`` / ``Answer: C``
    (``**C**`` and ``C)`` too); a reply that is one letter (``"C"``, ``"(C)."``). Letters are upper case.

    Example:
        >>> multiple_choice_answer("Both B and C look close, but the answer is (C).")
        'C'
        >>> multiple_choice_answer("\\\\boxed{b}"), multiple_choice_answer(" (D). ")
        ('B', 'D')
        >>> multiple_choice_answer("I think so") is None
        True

    """

    def letter(fragment: str | None) -> str | None:
        if fragment is None:
            return None
        found = re.match(r"^[\s*(\[]*([A-Za-z])(?![A-Za-z])", fragment)
        if found is None:
            return None
        choice = found.group(1).upper()
        return choice if choice in letters else None

    boxed = extract_boxed(text)
    if boxed is not None:
        return letter(re.sub(r"\\text\{(.*?)\}", r"\1", boxed))
    marked = letter(_after_last_marker(text))
    if marked is not None:
        return marked
    alone = re.fullmatch(r"[\s*(\[]*([A-Za-z])[\s*)\].:]*", text)
    return letter(alone.group(1)) if alone else None


def multiple_choice_answers(letters: str = "ABCDEFGHIJ") -> AnswerKey:
    """An answer key for multiple-choice questions with these option letters (compared as letters).

    One key per set of letters (cached), so ``answers="multiple-choice:ABCD"`` names this very key.

    Example:
        >>> key = multiple_choice_answers("ABCD")
        >>> key.answer_of("Answer: d"), key.answer_of("Answer: E")
        ('D', None)

    """
    if not isinstance(letters, str) or not letters or not letters.isalpha() or not letters.isupper():
        raise ValueError(f"letters={letters!r} must be upper-case letters, e.g. 'ABCD'.")
    return _multiple_choice_key(letters)


@functools.cache
def _multiple_choice_key(letters: str) -> AnswerKey:
    return AnswerKey(
        name=f"multiple-choice:{letters}",
        extract=functools.partial(multiple_choice_answer, letters=letters),
        equivalent=str.__eq__,
    )


MULTIPLE_CHOICE_ANSWERS = multiple_choice_answers()
"""The option letter (A to J) a reply chooses, compared as letters."""

_NUMBER = re.compile(r"[-−]?\d+(?:\.\d+)?(?:\s*/\s*\d+)?|[-−]?\.\d+")


def canonical_number(text: str) -> str | None:
    """The first number in ``text`` as a canonical string (``None`` when it has none).

    Thousands separators, currency signs and a trailing period are ignored; a fraction ``a/b`` is read
    exactly. Integers print as integers, terminating decimals as decimals, others as ``p/q``.

    Example:
        >>> canonical_number("$1,200.50"), canonical_number("42.0"), canonical_number("-3/4"), canonical_number("2/6")
        ('1200.5', '42', '-0.75', '1/3')

    """
    cleaned = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    found = _NUMBER.search(cleaned)
    if found is None:
        return None
    token = found.group(0).replace("−", "-").replace(" ", "")
    try:
        value = Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for factor in (2, 5):
        while denominator % factor == 0:
            denominator //= factor
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    return f"{float(value):.{digits}f}" if digits <= 15 else f"{value.numerator}/{value.denominator}"


def number_answer(text: str) -> str | None:
    """A reply's final number: after the last ``####`` (GSM8K), else in the last ``\\boxed{}``, else after answer is.

    Returned canonical (:func:`canonical_number`); ``None`` when none of the three states a number.

    Example:
        >>> number_answer("48/2 = 24 clips in May.\\n#### 72")
        '72'
        >>> number_answer("So the answer is $1,200."), number_answer("\\\\boxed{0.50}")
        ('1200', '0.5')
        >>> number_answer("I get 7 and then 9.") is None
        True

    """
    if "####" in text:
        return canonical_number(text.rsplit("####", 1)[1])
    boxed = extract_boxed(text)
    if boxed is not None:
        return canonical_number(boxed)
    marked = _after_last_marker(text)
    return canonical_number(marked) if marked is not None else None


NUMBER_ANSWERS = AnswerKey(name="number", extract=number_answer, equivalent=str.__eq__)
"""A plain number (GSM8K's ``#### 42``, ``\\boxed{42}``, ``the answer is 42``), compared as exact rationals."""


def normalize_short_answer(answer: str) -> str:
    """A short answer normalised as SQuAD's evaluation does: lower case, no punctuation, no articles, single spaces.

    Example:
        >>> normalize_short_answer("  The Eiffel-Tower! "), normalize_short_answer("an apple")
        ('eiffel tower', 'apple')

    """
    text = re.sub(r"[^\w\s]", " ", answer.lower())
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def short_answer(text: str, max_chars: int = 100) -> str | None:
    """A reply's short answer, normalised (:func:`normalize_short_answer`).

    Read from the last ``\\boxed{}``, else the rest of the line after the last ``answer is`` /
    ``Answer:``, else the whole reply when it is one line. ``None`` when that is empty or longer
    than ``max_chars`` (a paragraph is not a short answer).

    Example:
        >>> short_answer("Let me think.\\nThe answer is: The Eiffel Tower."), short_answer("Paris")
        ('eiffel tower', 'paris')
        >>> short_answer("It depends.\\nOn many things.") is None
        True

    """
    boxed = extract_boxed(text)
    raw = boxed if boxed is not None else _after_last_marker(text)
    if raw is None:
        raw = text.strip() if "\n" not in text.strip() else None
    if raw is None:
        return None
    raw = re.sub(r"\\text\{(.*?)\}", r"\1", raw)
    normalised = normalize_short_answer(raw)
    return normalised if normalised and len(normalised) <= max_chars else None


def short_answers(max_chars: int = 100) -> AnswerKey:
    """An answer key for short free-text answers: normalised strings (:func:`short_answer`), compared for equality.

    Example:
        >>> group_equivalent([short_answer(t) for t in ["Paris.", "the answer is paris", "Lyon"]], key=short_answers())
        [[0, 1], [2]]

    """
    if max_chars < 1:
        raise ValueError(f"max_chars={max_chars} must be at least 1.")
    return AnswerKey(name="short", extract=functools.partial(short_answer, max_chars=max_chars), equivalent=str.__eq__)


SHORT_ANSWERS = short_answers()
"""A short free-text answer (up to 100 characters), normalised as SQuAD does, compared for equality."""


def _canonical_object(value: BaseModel) -> str:
    return json.dumps(value.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class SchemaAnswerKey(AnswerKey):
    """An answer key whose answers are objects of a pydantic model (built by :func:`schema_answers`).

    An answer is the canonical JSON of the validated object (keys sorted, no spaces), so two replies
    that give equal objects have equal answers and vote together, however their JSON was written.

    Attributes:
        schema: The pydantic model every answer is validated into.

    """

    schema: type[BaseModel] | None = None

    def explain(self, text: str, tool_calls: Sequence[ToolCall] = ()) -> str | None:
        """Why this reply has no answer (``None`` when it has one): no JSON object, or the validation errors.

        Example:
            >>> from pydantic import BaseModel
            >>> class City(BaseModel):
            ...     name: str
            >>> schema_answers(City).explain('{"town": "Paris"}')  # doctest: +ELLIPSIS
            'the object does not validate as City: name: Field required...'

        """
        assert self.schema is not None
        if tool_calls:
            data: dict[str, Any] | None = dict(tool_calls[0].args)
        else:
            data = find_json_object(text)
        if data is None:
            return "the reply holds no JSON object"
        try:
            self.schema.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors())
            return f"the object does not validate as {self.schema.__name__}: {problems}"
        return None

    def parse(self, answer: str) -> BaseModel:
        """The object an answer of this key stands for (an instance of :attr:`schema`).

        Raises:
            ValueError: If ``answer`` is not an answer of this key.

        """
        assert self.schema is not None
        try:
            return self.schema.model_validate_json(answer)
        except ValidationError as error:
            raise ValueError(f"answer={answer[:200]!r} is not a {self.schema.__name__} object: {error}") from None


def schema_answer(text: str, schema: type[BaseModel]) -> str | None:
    """A reply's answer as a ``schema`` object in canonical JSON, or ``None`` when it has none that validates.

    Example:
        >>> from pydantic import BaseModel
        >>> class Person(BaseModel):
        ...     name: str
        ...     age: int
        >>> schema_answer('Here: {"age": 41.0, "name": "Ada"}', Person)
        '{"age":41,"name":"Ada"}'

    """
    data = find_json_object(text)
    if data is None:
        return None
    try:
        return _canonical_object(schema.model_validate(data))
    except ValidationError:
        return None


def _schema_tool_answer(schema: type[BaseModel], tool_calls: Sequence[ToolCall]) -> str | None:
    try:
        return _canonical_object(schema.model_validate(tool_calls[0].args))
    except ValidationError:
        return None


def schema_answers(schema: type[BaseModel], *, name: str | None = None) -> SchemaAnswerKey:
    """An answer key for structured extraction: each reply validated into ``schema``; equal objects vote together.

    A reply's answer is its JSON object (the whole reply, a fenced block or the first ``{...}`` in
    it) or, when the turn called a tool (a policy bound to the schema as a tool), the call's
    arguments, validated into ``schema``. A reply that fails validation has no answer and does not
    vote; :func:`invalid_answers` (or :meth:`SchemaAnswerKey.explain`) says why. When no reply
    validates, the vote has no answer (``answer`` is ``None``).

    Raises:
        TypeError: If ``schema`` is not a pydantic model class.

    Example:
        >>> from pydantic import BaseModel
        >>> class Person(BaseModel):
        ...     name: str
        ...     age: int
        >>> key = schema_answers(Person)
        >>> replies = ['{"name": "Ada", "age": 36}', '{"age": 36, "name": "Ada"}', '{"name": "Ada"}']
        >>> group_equivalent([key.answer_of(r) for r in replies], key=key)
        [[0, 1]]
        >>> key.parse(key.answer_of(replies[0]))
        Person(name='Ada', age=36)

    """
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"schema={schema!r} is not a pydantic model class; pass a BaseModel subclass.")
    return SchemaAnswerKey(
        name=name or f"schema:{schema.__name__}",
        extract=functools.partial(schema_answer, schema=schema),
        equivalent=str.__eq__,
        read_tool_calls=functools.partial(_schema_tool_answer, schema),
        schema=schema,
    )


def invalid_answers(candidates: Sequence[Candidate], key: AnswerKey) -> dict[int, str]:
    """The candidates that have no answer under ``key`` (so they do not vote), each with the reason.

    A schema key (:func:`schema_answers`) gives its validation errors; other keys say that no answer
    was found. Truncated candidates are listed too (they never vote, whatever they say).

    Example:
        >>> from langchain_ttc.core.types import Candidate
        >>> c = Candidate(text="no letter here", steps=[], answer=None, finish_reason="eos")
        >>> invalid_answers([c], MULTIPLE_CHOICE_ANSWERS)
        {0: 'no answer found by the multiple-choice:ABCDEFGHIJ key'}

    """
    reasons: dict[int, str] = {}
    for index, candidate in enumerate(candidates):
        if not candidate.finished:
            reasons[index] = "cut off by max_tokens (a truncated candidate never votes)"
        elif candidate.answer is None:
            explained = key.explain(candidate.text, candidate.tool_calls) if isinstance(key, SchemaAnswerKey) else None
            reasons[index] = explained or f"no answer found by the {key.name} key"
    return reasons
