"""The settings of ``ttc serve`` itself: address, API key, budgets; from flags, environment or the config file.

In: ``TTC_SERVE_*`` environment variables, the ``[serve]`` table of the TOML config file
(``TTC_CONFIG``), and explicit values (the ``ttc serve`` flags), in that order of precedence
(flags highest). Out: a frozen :class:`ServeSettings`. The policy and PRM are configured apart
(:mod:`langchain_ttc.engines.settings`, whose pydantic-settings sources this module shares); this
layer knows every table of the file, so it rejects one that is neither ``[serve]`` nor the engines'.

================================  ==============================  ===================================================
variable                          file key                        meaning (default)
================================  ==============================  ===================================================
``TTC_SERVE_HOST``                ``[serve] host``                address to listen on (``127.0.0.1``)
``TTC_SERVE_PORT``                ``[serve] port``                port (8000)
``TTC_SERVE_API_KEY``             ``[serve] api_key``             bearer token clients must send (none: open)
``TTC_SERVE_DEFAULT_N``           ``[serve] default_n``           budget of a bare strategy name (16)
``TTC_SERVE_MAX_N``               ``[serve] max_n``               largest budget a request may ask (64, <= TTC_MAX_N)
``TTC_SERVE_MAX_TOKENS``          ``[serve] max_tokens``          default tokens per solution or step (strategy's)
``TTC_SERVE_ANSWERS``             ``[serve] answers``             answer key of the votes, by name (``math``)
``TTC_SERVE_MAX_TOKENS_LIMIT``    ``[serve] max_tokens_limit``    largest ``max_tokens`` a request may ask (4096)
``TTC_SERVE_MAX_BODY_BYTES``      ``[serve] max_body_bytes``      largest request body, 413 beyond (1 MiB)
``TTC_SERVE_MAX_PROMPT_CHARS``    ``[serve] max_prompt_chars``    most characters in a request's messages (65536)
``TTC_SERVE_MAX_PROMPT_TOKENS``   ``[serve] max_prompt_tokens``   most prompt tokens; never over the context (16384)
``TTC_SERVE_REQUEST_TIMEOUT_S``   ``[serve] request_timeout_s``   deadline of a request, queue included (300 s)
``TTC_SERVE_MAX_IN_FLIGHT``       ``[serve] max_in_flight``       runs at once (16)
``TTC_SERVE_MAX_QUEUE``           ``[serve] max_queue``           runs waiting for a slot, 429 beyond (64)
``TTC_SERVE_SHUTDOWN_TIMEOUT_S``  ``[serve] shutdown_timeout_s``  time in-flight requests get on SIGTERM (30 s)
``TTC_SERVE_MAX_CONNECTIONS``     ``[serve] max_connections``     open connections, 503 beyond (1024)
================================  ==============================  ===================================================

Example:
    >>> load_serve_settings(environ={"TTC_SERVE_PORT": "9000"}).port
    9000
    >>> load_serve_settings(environ={"TTC_SERVE_MAX_N": "0"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: TTC_SERVE_MAX_N='0' is invalid: input should be greater than or equal to 1 (An integer >= 1: ...).

"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from langchain_ttc.engines.settings import ENGINE_SECTIONS, SectionSettings, read_config_file, reading
from langchain_ttc.strategies.config import answer_key_named, limits

SERVE_SECTION = "serve"
"""The config file's table of ``ttc serve``."""
CONFIG_SECTIONS = (*ENGINE_SECTIONS, SERVE_SECTION)
"""Every table the config file may hold."""
SERVE_PREFIX = "TTC_SERVE_"
"""The prefix of the server's environment variables."""


def setting_name(key: str) -> str:
    """How a refusal tells the operator to change a setting: its variable and its file key.

    Example:
        >>> setting_name("max_body_bytes")
        'TTC_SERVE_MAX_BODY_BYTES (or [serve] max_body_bytes)'

    """
    return f"{SERVE_PREFIX}{key.upper()} (or [{SERVE_SECTION}] {key})"


class ServeLimits(BaseModel):
    """The bounds ``ttc serve`` enforces on every request (part of :class:`ServeSettings`).

    Each refusal is an error in OpenAI's format that names the limit, the value and the setting that
    raises it (:func:`setting_name`). The defaults fit one policy server; raise them for a bigger one.

    Example:
        >>> ServeLimits().max_body_bytes, ServeLimits(max_in_flight=4).max_in_flight
        (1048576, 4)

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens_limit: int = Field(
        default=4096,
        ge=1,
        description="An integer >= 1: the largest max_tokens a request may ask (at most TTC_MAX_TOKENS).",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="An integer >= 1: the largest request body in bytes (413 beyond, unparsed).",
    )
    max_prompt_chars: int = Field(
        default=65_536, ge=1, description="An integer >= 1: the most characters the messages of one request may hold."
    )
    max_prompt_tokens: int = Field(
        default=16_384,
        ge=1,
        description="An integer >= 1: the most prompt tokens (never over the policy's context window).",
    )
    request_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Seconds > 0: the deadline of one request, queueing included (then it is cancelled).",
    )
    max_in_flight: int = Field(default=16, ge=1, description="An integer >= 1: the runs that may be in flight at once.")
    max_queue: int = Field(
        default=64,
        ge=0,
        description="An integer >= 0: the runs that may wait for a slot (429 with Retry-After beyond).",
    )
    shutdown_timeout_s: float = Field(
        default=30.0, ge=0, description="Seconds >= 0: how long in-flight requests may still run after SIGTERM."
    )

    @field_validator("max_tokens_limit")
    @classmethod
    def _within_the_run_limit(cls, value: int) -> int:
        ceiling = limits().max_tokens
        if value > ceiling:
            raise ValueError(
                f"max_tokens_limit={value} is over the limit of {ceiling} every run has (TTC_MAX_TOKENS); "
                f"pass at most {ceiling}, or raise TTC_MAX_TOKENS."
            )
        return value


class _ServeAddress(SectionSettings):
    """Where ``ttc serve`` listens and what budgets it accepts (the first fields of :class:`ServeSettings`)."""

    host: str = Field("127.0.0.1", min_length=1, description="The address to listen on, e.g. 0.0.0.0.")
    port: int = Field(8000, ge=0, le=65535, description="A TCP port, 0 to 65535.")
    api_key: str | None = Field(None, min_length=1, repr=False, description="The bearer token clients must send.")
    default_n: int = Field(16, ge=1, description="An integer >= 1: the budget of a bare strategy name.")
    max_n: int = Field(
        64, ge=1, description="An integer >= 1: the largest budget a request may ask for (at most TTC_MAX_N)."
    )
    max_tokens: int | None = Field(None, ge=1, description="An integer >= 1: tokens per solution (per step).")
    answers: str = Field(
        "math",
        description="The answer key every strategy's votes read answers with, by name: math, reference-math, number, "
        "short, multiple-choice or tool_calls (a request's ttc_answers overrides it).",
    )
    max_connections: int = Field(
        1024, ge=1, description="An integer >= 1: the open connections uvicorn accepts (503 beyond)."
    )

    @field_validator("answers")
    @classmethod
    def _shipped_answer_key(cls, value: str) -> str:
        answer_key_named(value, objects=False)  # a server runs shipped keys only: a name is all a setting holds
        return value

    @field_validator("max_n")
    @classmethod
    def _within_the_budget_limit(cls, value: int) -> int:
        ceiling = limits().max_n
        if value > ceiling:
            raise ValueError(
                f"max_n={value} is over the limit of {ceiling} every run has (TTC_MAX_N); "
                f"pass at most {ceiling}, or raise TTC_MAX_N."
            )
        return value


class ServeSettings(ServeLimits, _ServeAddress):
    """How ``ttc serve`` listens, what budgets it accepts and the limits it enforces (``TTC_SERVE_*``, ``[serve]``).

    Example:
        >>> from langchain_ttc.engines.settings import reading
        >>> with reading({"TTC_SERVE_MAX_N": "8"}, None):
        ...     ServeSettings(default_n=8).max_n
        8

    """

    model_config = SettingsConfigDict(env_prefix=SERVE_PREFIX, toml_table_header=(SERVE_SECTION,))

    @field_validator("max_tokens_limit")
    @classmethod
    def _default_within_the_request_limit(cls, value: int, info: ValidationInfo) -> int:
        default = info.data.get("max_tokens")
        if isinstance(default, int) and default > value:
            raise ValueError(
                f"max_tokens={default} (the default per solution, {SERVE_PREFIX}MAX_TOKENS) is over "
                f"max_tokens_limit={value}; lower the one or raise the other."
            )
        return value

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if self.default_n > self.max_n:
            raise ValueError(f"default_n={self.default_n} exceeds max_n={self.max_n}; raise max_n or lower default_n.")
        return self

    @classmethod
    def origins(cls, explicit: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str]:
        """Where each value comes from; ``""`` names the two budgets the check across fields compares."""
        where = super().origins(explicit, names)
        return {**where, "": f"{where['default_n']} / {where['max_n']}"}


def load_serve_settings(
    *,
    overrides: Mapping[str, Any] | None = None,
    config: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    origins: Mapping[str, str] | None = None,
) -> ServeSettings:
    """Read the server's settings: explicit values, then ``TTC_SERVE_*``, then the file's ``[serve]`` table.

    Args:
        overrides: Explicit settings (the flags), e.g. ``{"port": 8001}``.
        config: A TOML config file (default: ``TTC_CONFIG``'s, if any).
        environ: The environment (default: ``os.environ``).
        origins: Names of the explicit settings for messages, e.g. ``{"port": "--port"}``.

    Raises:
        ValueError: An unknown variable, table or key, or an invalid value (named, with the fix).
        FileNotFoundError: If the config file does not exist.

    Example:
        >>> load_serve_settings(overrides={"max_n": 8}, environ={})
        Traceback (most recent call last):
        ...
        ValueError: TTC_SERVE_DEFAULT_N / serve.max_n: default_n=16 exceeds max_n=8; raise max_n or lower default_n.

    """
    env = os.environ if environ is None else environ
    file = read_config_file(config, env)
    unknown = [table for table in file.tables if table not in CONFIG_SECTIONS] if file else []
    if file and unknown:
        sections = ", ".join(f"[{s}]" for s in CONFIG_SECTIONS[:-1]) + f" or [{CONFIG_SECTIONS[-1]}]"
        raise ValueError(f"{file.name}: [{unknown[0]}] is not a section; use {sections}.")
    with reading(env, file):
        return ServeSettings.read(overrides, origins)[0]
