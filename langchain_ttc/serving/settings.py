"""The settings of ``ttc serve`` itself: address, API key, budgets; from flags, environment or the config file.

In: ``TTC_SERVE_*`` environment variables, the ``[serve]`` table of the TOML config file
(``TTC_CONFIG``), and explicit values (the ``ttc serve`` flags), in that order of precedence
(flags highest). Out: a frozen :class:`ServeSettings`. The policy and PRM are configured apart
(:mod:`langchain_ttc.engines.settings`).

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
    ValueError: TTC_SERVE_MAX_N='0' is invalid: input should be greater than or equal to 1; pass ...

"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from langchain_ttc.engines.settings import CONFIG_VARIABLE, build_settings, layered_settings, read_config_file


class ServeSettings(BaseModel):
    """How ``ttc serve`` listens and what budgets it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", min_length=1, description="The address to listen on, e.g. 0.0.0.0.")
    port: int = Field(8000, ge=0, le=65535, description="A TCP port, 0 to 65535.")
    api_key: str | None = Field(None, min_length=1, repr=False, description="The bearer token clients must send.")
    default_n: int = Field(16, ge=1, description="An integer >= 1: the budget of a bare strategy name.")
    max_n: int = Field(64, ge=1, description="An integer >= 1: the largest budget a request may ask for.")
    max_tokens: int | None = Field(None, ge=1, description="An integer >= 1: tokens per solution (per step).")

    @model_validator(mode="after")
    def _default_within_max(self) -> ServeSettings:
        if self.default_n > self.max_n:
            raise ValueError(f"default_n={self.default_n} exceeds max_n={self.max_n}; raise max_n or lower default_n.")
        return self


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
        ValueError: An unknown variable or key, or an invalid value (named, with the fix).

    """
    env = dict(os.environ if environ is None else environ)
    path = config if config is not None else env.get(CONFIG_VARIABLE) or None
    file = read_config_file(path, origin="config" if config is not None else CONFIG_VARIABLE) if path else {}
    values, where = layered_settings(
        ServeSettings, section="serve", env_prefix="TTC_SERVE_", environ=env, file=file,
        file_name=os.fspath(path) if path else "(no file)", overrides=overrides, origins=origins,
    )  # fmt: skip
    try:
        return build_settings(ServeSettings, values, where)
    except ValueError as error:
        if "exceeds max_n" in str(error):
            raise ValueError(f"{where['default_n']} / {where['max_n']}: {error}") from None
        raise
