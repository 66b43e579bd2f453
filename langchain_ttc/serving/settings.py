"""The settings of ``ttc serve`` itself: address, API key, budgets; from flags, environment or the config file.

In: ``TTC_SERVE_*`` environment variables, the ``[serve]`` table of the TOML config file
(``TTC_CONFIG``), and explicit values (the ``ttc serve`` flags), in that order of precedence
(flags highest). Out: a frozen :class:`ServeSettings`. The policy and PRM are configured apart
(:mod:`langchain_ttc.engines.settings`, whose pydantic-settings sources this module shares); this
layer knows every table of the file, so it rejects one that is neither ``[serve]`` nor the engines'.

=========================  ========================  ==========================================
variable                   file key                  meaning (default)
=========================  ========================  ==========================================
``TTC_SERVE_HOST``         ``[serve] host``          address to listen on (``127.0.0.1``)
``TTC_SERVE_PORT``         ``[serve] port``          port (8000)
``TTC_SERVE_API_KEY``      ``[serve] api_key``       bearer token clients must send (none: open)
``TTC_SERVE_DEFAULT_N``    ``[serve] default_n``     budget of a bare strategy name (16)
``TTC_SERVE_MAX_N``        ``[serve] max_n``         largest budget a request may ask for (64)
``TTC_SERVE_MAX_TOKENS``   ``[serve] max_tokens``    default tokens per solution or step (strategy's)
=========================  ========================  ==========================================

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

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from langchain_ttc.engines.settings import ENGINE_SECTIONS, SectionSettings, read_config_file, reading

SERVE_SECTION = "serve"
"""The config file's table of ``ttc serve``."""
CONFIG_SECTIONS = (*ENGINE_SECTIONS, SERVE_SECTION)
"""Every table the config file may hold."""


class ServeSettings(SectionSettings):
    """How ``ttc serve`` listens and what budgets it accepts (``TTC_SERVE_*``, ``[serve]``).

    Example:
        >>> from langchain_ttc.engines.settings import reading
        >>> with reading({"TTC_SERVE_MAX_N": "8"}, None):
        ...     ServeSettings(default_n=8).max_n
        8

    """

    model_config = SettingsConfigDict(env_prefix="TTC_SERVE_", toml_table_header=(SERVE_SECTION,))

    host: str = Field("127.0.0.1", min_length=1, description="The address to listen on, e.g. 0.0.0.0.")
    port: int = Field(8000, ge=0, le=65535, description="A TCP port, 0 to 65535.")
    api_key: str | None = Field(None, min_length=1, repr=False, description="The bearer token clients must send.")
    default_n: int = Field(16, ge=1, description="An integer >= 1: the budget of a bare strategy name.")
    max_n: int = Field(64, ge=1, description="An integer >= 1: the largest budget a request may ask for.")
    max_tokens: int | None = Field(None, ge=1, description="An integer >= 1: tokens per solution (per step).")

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
