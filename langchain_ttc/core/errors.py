"""Pydantic validation errors as sentences a user can act on: the parameter, its value and the fix.

In: a :class:`pydantic.ValidationError`, and optionally the model that raised it (for its options
and field descriptions) and what to call each parameter (an environment variable, a file key, a
flag). Out: one string, the problems joined by ``"; "``; callers raise it as a ``ValueError``.

- an invalid value: ``field=value is invalid: <pydantic's message> (<the field's description>).``
- an unknown option: ``field=value is not an option of Model; pass one of a, b, c.``
- a missing value: ``field is required (<the field's description>).``
- a validator's own ``ValueError`` names its parameters itself: its message as it is, after the
  location when the validator belongs to a nested model (``budgets.4.hard: ...``).

Example:
    >>> from pydantic import BaseModel, Field, ValidationError
    >>> class Budget(BaseModel, extra="forbid"):
    ...     n: int = Field(ge=1, description="Solutions sampled.")
    >>> try:
    ...     Budget(n=0)
    ... except ValidationError as error:
    ...     print(format_validation_error(error, Budget))
    n=0 is invalid: input should be greater than or equal to 1 (Solutions sampled.).
    >>> try:
    ...     Budget(n=1, m=2)
    ... except ValidationError as error:
    ...     print(format_validation_error(error, Budget))
    m=2 is not an option of Budget; pass one of n.
    >>> try:
    ...     Budget(n="x")
    ... except ValidationError as error:
    ...     print(format_validation_error(error, Budget, names={"n": "TTC_N"}))  # doctest: +ELLIPSIS
    TTC_N='x' is invalid: input should be a valid integer, ... (Solutions sampled.).

"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

_VALIDATOR_ERRORS = {"value_error": "Value error, ", "assertion_error": "Assertion failed, "}
"""Error types raised by a model's own validators, and the prefix pydantic puts before their message."""


def format_validation_error(
    error: ValidationError, cls: type[BaseModel] | None = None, *, names: Mapping[str, str] | None = None
) -> str:
    """Every problem in ``error`` as one sentence naming the parameter, its value and the fix.

    Args:
        error: The error pydantic raised.
        cls: The model validated (its fields give the known options and the descriptions that end
            each message); ``None`` for messages without them.
        names: What to call a parameter in messages, by its dotted location (``{"n": "--n"}``);
            the key ``""`` names the model as a whole (before the message of a check across fields).

    Returns:
        The problems joined by ``"; "``, in pydantic's order.

    Example:
        >>> from pydantic import BaseModel
        >>> class Size(BaseModel):
        ...     width: int
        >>> try:
        ...     Size()
        ... except ValidationError as error:
        ...     format_validation_error(error, Size)
        'width is required.'

    """
    return "; ".join(_problem(item, cls, names or {}) for item in error.errors())


def _problem(item: ErrorDetails, cls: type[BaseModel] | None, names: Mapping[str, str]) -> str:
    location = ".".join(str(part) for part in item["loc"])
    name = names.get(location, location)
    message = item["msg"].removeprefix(_VALIDATOR_ERRORS.get(item["type"], ""))
    if item["type"] in _VALIDATOR_ERRORS or not location:  # a validator's message names its parameters
        return f"{name}: {message}" if name else message
    if item["type"] == "extra_forbidden":
        if cls is not None and len(item["loc"]) == 1:
            known = ", ".join(sorted(cls.model_fields))
            return f"{name}={item['input']!r} is not an option of {cls.__name__}; pass one of {known}."
        return f"{name}={item['input']!r} is not an option; remove it."
    if item["type"] == "missing":
        return f"{name} is required{_description(cls, location)}."
    return f"{name}={item['input']!r} is invalid: {message[0].lower()}{message[1:]}{_description(cls, location)}."


def _description(cls: type[BaseModel] | None, field: str) -> str:
    info = cls.model_fields.get(field) if cls is not None else None
    return f" ({info.description})" if info is not None and info.description else ""
