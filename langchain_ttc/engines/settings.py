"""Configuration without code: the policy and the PRM from environment variables or a TOML file.

In: ``TTC_POLICY_*`` and ``TTC_PRM_*`` environment variables, a TOML file (``TTC_CONFIG`` or an
explicit path; tables ``[policy]`` and ``[prm]``), and explicit values (CLI flags). Out: a frozen
:class:`EngineSettings` that loads its engines once per process (through :mod:`.loading`). The
``ttc`` CLI, ``ttc serve`` and the LangGraph Studio graphs (``graphs/*.py``) all read it, so a
deployment points every surface at its own model servers without editing Python.

Precedence, highest first: explicit values (CLI flags), environment variables, the config file,
the defaults. The defaults are the offline Arith world shipped in the package (``arith:small``
with the transformers backend, the ``arith:prm`` Math-Shepherd PRM): no configuration is needed.

============================  ====================  =============================================
variable                      file key              meaning
============================  ====================  =============================================
``TTC_CONFIG``                --                    path of the TOML file
``TTC_POLICY_BACKEND``        ``[policy] backend``  ``transformers``, ``vllm`` or ``openai`` (a server)
``TTC_POLICY_URL``            ``[policy] url``      server URL (implies ``openai``)
``TTC_POLICY_MODEL``          ``[policy] model``    checkpoint (in-process) or served model name (server)
``TTC_POLICY_API_KEY``        ``[policy] api_key``  bearer token for the server (else ``OPENAI_API_KEY``)
``TTC_POLICY_TOKENIZER``      ``[policy] tokenizer`` tokenizer that renders prompts for a server
``TTC_PRM_*``                 ``[prm] ...``         the same for the PRM, plus ``PROTOCOL`` and
                                                    ``TRUST_REMOTE_CODE``
============================  ====================  =============================================

Every value is validated when the settings are read, before any weights load; an error names the
variable or file key, the value and the fix. Each section is a pydantic-settings ``BaseSettings``
(:class:`SectionSettings`) whose sources are the explicit values, the variables and the section's
table of the file (a ``TomlConfigSettingsSource``). The file may hold tables of other layers
(``ttc serve`` reads ``[serve]``): the engines read only their own, and reject a table whose name
is a misspelling of one of them.

Example:
    >>> settings = load_engine_settings(environ={"TTC_POLICY_URL": "http://127.0.0.1:8000"})
    >>> settings.policy.backend, settings.policy.url, settings.prm.model
    ('openai', 'http://127.0.0.1:8000', 'arith:prm')
    >>> load_engine_settings(environ={"TTC_PRM_PROTOCOL": "shepherd"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: TTC_PRM_PROTOCOL='shepherd' is invalid: input should be 'math_shepherd', 'rlhflow' or 'qwen_math' (...).

"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from langchain_ttc.core.errors import format_validation_error
from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.engines.loading import load_policy, load_prm
from langchain_ttc.engines.references import resolve_model_reference, resolve_reference

CONFIG_VARIABLE = "TTC_CONFIG"
"""The environment variable naming the TOML config file."""
API_KEY_FALLBACK = "OPENAI_API_KEY"
"""Read for a server's API key when the section sets none (the OpenAI clients' own variable)."""
DEFAULT_MODELS: dict[str, str] = {}
"""The in-process models used when none is configured, by section: the composition root
(:mod:`langchain_ttc.wiring`) names them (the Arith checkpoints shipped in the package)."""
ENGINE_SECTIONS = ("policy", "prm")
"""The config file's tables the engines read (the layers above read their own)."""

Backend = Literal["transformers", "vllm", "openai"]
"""The names of :data:`~langchain_ttc.engines.loading.BACKENDS`, as a type."""
Protocol = Literal["math_shepherd", "rlhflow", "qwen_math"]
"""The names of :data:`~langchain_ttc.engines.loading.PRM_PROTOCOLS`, as a type."""


@dataclass(frozen=True)
class ConfigFile:
    """A TOML config file, read once.

    Attributes:
        name: The path as given, for messages.
        path: The file.
        tables: Its contents.

    """

    name: str
    path: Path
    tables: dict[str, Any]


def read_config_file(config: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> ConfigFile | None:
    """The config file: ``config`` if given, else the file ``TTC_CONFIG`` names, else none.

    Raises:
        FileNotFoundError: If the file does not exist (named by ``config`` or ``TTC_CONFIG``).
        ValueError: If it is not valid TOML (the message names the file and the error).

    Example:
        >>> read_config_file(None, {}) is None
        True

    """
    origin = "config" if config is not None else CONFIG_VARIABLE
    given = config if config is not None else environ.get(CONFIG_VARIABLE) or None
    if given is None:
        return None
    path = Path(given).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{origin}={os.fspath(given)!r} does not exist; pass the path of a TOML config file.")
    try:
        return ConfigFile(os.fspath(given), path, tomllib.loads(path.read_text()))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{origin}={os.fspath(given)!r} is not valid TOML ({error}); fix the file.") from None


@dataclass(frozen=True)
class _Inputs:
    environ: Mapping[str, str]
    file: ConfigFile | None


_INPUTS: ContextVar[_Inputs | None] = ContextVar("langchain_ttc_settings_inputs", default=None)
"""What :class:`SectionSettings` read inside :func:`reading` (outside: ``os.environ`` and ``TTC_CONFIG``)."""


@contextmanager
def reading(environ: Mapping[str, str], file: ConfigFile | None) -> Iterator[None]:
    """Make the settings built inside read ``environ`` and ``file`` instead of ``os.environ`` and ``TTC_CONFIG``.

    Example:
        >>> with reading({"TTC_POLICY_MODEL": "arith:large"}, None):
        ...     ModelSettings().model
        'arith:large'

    """
    token = _INPUTS.set(_Inputs(environ, file))
    try:
        yield
    finally:
        _INPUTS.reset(token)


def _inputs() -> _Inputs:
    return _INPUTS.get() or _Inputs(os.environ, read_config_file(None, os.environ))


class _Environment(EnvSettingsSource):
    """The section's variables, from the environment being read; one the section lacks is an error."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:  # the hook pydantic-settings' dotenv source overrides too
        prefix = str(self.settings_cls.model_config.get("env_prefix", ""))
        known = [prefix + name.upper() for name in self.settings_cls.model_fields]
        for variable, value in self._environ.items():
            if value and variable.upper().startswith(prefix) and variable.upper() not in known:
                raise ValueError(f"{variable} is not a setting; use one of {', '.join(known)}.")
        return {variable.lower(): value for variable, value in self._environ.items() if value}


class _ConfigTable(TomlConfigSettingsSource):
    """The section's table of the config file (none: empty); a key the section lacks is an error."""

    def __init__(self, settings_cls: type[BaseSettings], file: ConfigFile | None) -> None:
        self._name, self._tables = (file.name, file.tables) if file else ("", {})
        self._known = list(settings_cls.model_fields)  # read before the base class sets settings_cls
        super().__init__(settings_cls, toml_file=file.path if file else None)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        (section,) = self.toml_table_header
        table = self._tables.get(section, {})
        if not isinstance(table, dict):
            raise ValueError(f"{self._name}: {section} = {table!r} is not a table; write it as [{section}].")
        for key in table:
            if key not in self._known:
                known = ", ".join(self._known)
                raise ValueError(f"{self._name}: [{section}] {key} is not a setting; use one of {known}.")
        return {**self._tables, section: table}  # the file as read once, its table filled in


class SectionSettings(BaseSettings):
    """Settings of one config section: explicit values, then ``TTC_<SECTION>_*`` variables, then the file's table.

    A subclass names its variables' prefix (``env_prefix``) and its table (``toml_table_header``) in
    its ``model_config``. Empty variables count as unset.
    """

    model_config = SettingsConfigDict(extra="forbid", frozen=True, env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values, then the section's variables, then its table of the config file."""
        inputs = _inputs()
        return init_settings, _Environment(settings_cls, inputs.environ), _ConfigTable(settings_cls, inputs.file)

    @classmethod
    def section(cls) -> str:
        """The config file's table (``toml_table_header`` in the ``model_config``)."""
        (section,) = cls.model_config.get("toml_table_header") or ("",)
        return section

    @classmethod
    def origins(cls, explicit: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str]:
        """Where each field's value comes from: an explicit value's name, the variable or the file key.

        An explicit value is named by ``names`` (default ``section.key``), a field nobody sets by its variable.
        """
        inputs, section = _inputs(), cls.section()
        table = inputs.file.tables.get(section) if inputs.file else None
        in_file = table.keys() if isinstance(table, dict) else set()
        variables = {variable.upper(): variable for variable, value in inputs.environ.items() if value}
        where = {key: names.get(key, f"{section}.{key}") for key, value in explicit.items() if value is not None}
        for key in cls.model_fields.keys() - where.keys():
            variable = f"{cls.model_config.get('env_prefix', '')}{key.upper()}"
            file_key = f"{inputs.file.name} [{section}] {key}" if inputs.file and key in in_file else None
            where[key] = variables.get(variable) or file_key or variable
        return where

    @classmethod
    def read(
        cls, explicit: Mapping[str, Any] | None = None, names: Mapping[str, str] | None = None
    ) -> tuple[Self, dict[str, str]]:
        """The settings, and where each value came from (see :meth:`origins`).

        Args:
            explicit: Values over the variables and the file; ``None`` unsets what they say.
            names: What to call the explicit values in messages, e.g. ``{"model": "--policy"}``.

        Raises:
            ValueError: An unknown variable, key or option, or an invalid value; the message names
                the variable, key or option, the value and the fix.

        """
        given = dict(explicit or {})
        where = cls.origins(given, names or {})
        for key, value in given.items():
            if value is None and key in cls.model_fields:  # unset: the default, over the variables and the file
                given[key] = cls.model_fields[key].get_default(call_default_factory=True)
        try:
            return cls(**given), where
        except ValidationError as error:
            raise ValueError(format_validation_error(error, cls, names=where)) from None


class ModelSettings(SectionSettings):
    """Where one model runs: in process (a checkpoint) or on an OpenAI-compatible server (a URL).

    Read as the policy's (``TTC_POLICY_*``, ``[policy]``); :class:`PRMSettings` reads the PRM's.

    Attributes:
        backend: ``transformers`` or ``vllm`` (in process) or ``openai`` (a vLLM/OpenAI-compatible
            server). Default: ``openai`` when ``url`` is set, else ``transformers``.
        url: The server's base URL (a vLLM server, or a router in front of replicas).
        model: In process: a directory, a hub id or an alias (``arith:small``). On a server: the
            served model name (default: the first one the server lists at ``/v1/models``).
        api_key: The server's bearer token (default: ``OPENAI_API_KEY`` for a server).
        tokenizer: A server's tokenizer (a directory or hub id) that renders prompts locally
            (default: loaded from the served model name).

    Example:
        >>> with reading({"TTC_POLICY_URL": "http://127.0.0.1:8000"}, None):
        ...     settings, origins = ModelSettings.read({"model": "m"}, {"model": "--policy"})
        >>> settings.url, origins["url"], origins["model"]
        ('http://127.0.0.1:8000', 'TTC_POLICY_URL', '--policy')

    """

    model_config = SettingsConfigDict(env_prefix="TTC_POLICY_", toml_table_header=("policy",))

    backend: Backend | None = Field(None, description="transformers or vllm (in process), or openai (a server).")
    url: str | None = Field(None, description="The server URL, e.g. http://127.0.0.1:8000 (implies openai).")
    model: str | None = Field(None, description="A checkpoint (in process) or the served model name (server).")
    api_key: str | None = Field(None, repr=False, description="The server's API key (bearer token).")
    tokenizer: str | None = Field(None, description="The tokenizer that renders prompts for a server.")

    @property
    def on_server(self) -> bool:
        """Whether the model runs on a server (``backend == "openai"``)."""
        return self.backend == "openai"

    def describe(self) -> dict[str, Any]:
        """The settings without the API key (for logs, result metadata and ``/v1/models``)."""
        return {k: v for k, v in self.model_dump(exclude={"api_key"}).items() if v is not None}

    def location(self) -> tuple[str, Backend]:
        """Where the model is (its URL on a server, else the checkpoint) and its backend.

        Raises:
            ValueError: If the defaults are not filled in (settings not read by :func:`load_engine_settings`).

        """
        where = self.url if self.on_server else self.model
        if self.backend is None or where is None:
            raise ValueError(
                f"{self.section()} settings {self.describe()} name no backend and model (or URL); read them with "
                "load_engine_settings(), which fills in the defaults."
            )
        return where, self.backend

    def resolved(self, where: Mapping[str, str], environ: Mapping[str, str]) -> Self:
        """The settings with the defaults that depend on other fields, checked to fit together.

        Raises:
            ValueError: A server backend without a URL, a URL that is not http(s), or server settings
                with an in-process backend (named by ``where``).

        """
        backend = self.backend or ("openai" if self.url else "transformers")
        update: dict[str, Any] = {"backend": backend}
        if backend == "openai":
            if not self.url:
                raise ValueError(
                    f"{where['backend']}='openai' runs the {self.section()} on a server, but no URL is set; "
                    f"set {where['url']} (for example http://127.0.0.1:8000)."
                )
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"{where['url']}={self.url!r} is not an http(s) URL; pass e.g. http://127.0.0.1:8000.")
            if self.api_key is None and environ.get(API_KEY_FALLBACK):
                update["api_key"] = environ[API_KEY_FALLBACK]
        else:
            for key in ("url", "api_key", "tokenizer"):
                if getattr(self, key):
                    raise ValueError(
                        f"{where[key]} is set but {where['backend']}={backend!r} runs the {self.section()} in process; "
                        f"unset {where[key]}, or set {where['backend']}=openai to use a server."
                    )
            model = self.model or DEFAULT_MODELS.get(self.section())
            if model is None:
                raise ValueError(
                    f"no {self.section()} model is configured; set {where['model']} (a directory or hub id)."
                )
            update["model"] = model
        return self.model_copy(update=update)


class PRMSettings(ModelSettings):
    """Where the PRM runs, and how it reads steps (``TTC_PRM_*``, ``[prm]``).

    Attributes:
        protocol: ``math_shepherd``, ``rlhflow`` (generative PRMs) or ``qwen_math`` (a reward model);
            never guessed from the model name.
        trust_remote_code: Run the checkpoint's own modelling code (transformers, ``qwen_math``).

    """

    model_config = SettingsConfigDict(env_prefix="TTC_PRM_", toml_table_header=("prm",))

    protocol: Protocol = Field(
        "math_shepherd", description="How the PRM reads steps: math_shepherd, rlhflow or qwen_math."
    )
    trust_remote_code: bool = Field(
        False, description="true or false: run the checkpoint's own modelling code (transformers)."
    )


class EngineSettings(BaseModel):
    """The policy's and the PRM's settings; loads each engine once per process.

    Example:
        >>> settings = load_engine_settings(environ={})
        >>> settings.policy.describe()
        {'backend': 'transformers', 'model': 'arith:small'}
        >>> settings.load_policy() is settings.load_policy()  # doctest: +SKIP
        True

    """

    model_config = ConfigDict(frozen=True)

    policy: ModelSettings
    prm: PRMSettings
    origins: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)

    def check(self, *, prm: bool = True) -> None:
        """Check that local model directories exist, before any weights load.

        Raises:
            FileNotFoundError: A local path that is not a model directory (named by its variable, key or flag).

        """
        for settings in (self.policy, self.prm) if prm else (self.policy,):
            if not settings.on_server and settings.model:
                key = f"{settings.section()}.model"
                resolve_model_reference(resolve_reference(settings.model), parameter=self.origins.get(key, key))

    def load_policy(self) -> PolicyEngine:
        """The policy engine (loaded once per process; a server's model name is asked once)."""
        p = self.policy
        where, backend = p.location()
        if p.on_server:
            return load_policy(where, backend, served_model_name=p.model, api_key=p.api_key, tokenizer=p.tokenizer)
        return load_policy(where, backend)

    def load_prm(self) -> PRMEngine:
        """The PRM engine (loaded once per process)."""
        p = self.prm
        where, backend = p.location()
        if p.on_server:
            return load_prm(
                where, backend, p.protocol, served_model_name=p.model, api_key=p.api_key, tokenizer=p.tokenizer
            )
        return load_prm(where, backend, p.protocol, trust_remote_code=p.trust_remote_code)

    def describe(self) -> dict[str, Any]:
        """Both sections without API keys."""
        return {"policy": self.policy.describe(), "prm": self.prm.describe()}


def _check_engine_tables(file: ConfigFile) -> None:
    """Reject what the engines can tell is a mistake in the file: a value outside any table, a misspelt table.

    Raises:
        ValueError: Naming the file, the key or table, and the fix.

    """
    for key, value in file.tables.items():
        if not isinstance(value, dict):
            raise ValueError(f"{file.name}: {key} = {value!r} is not in a table; put it under [policy] or [prm].")
        close = difflib.get_close_matches(key, ENGINE_SECTIONS, n=1)
        if key not in ENGINE_SECTIONS and close:
            raise ValueError(f"{file.name}: [{key}] is not a section; did you mean [{close[0]}]?")


def load_engine_settings(
    *,
    policy: Mapping[str, Any] | None = None,
    prm: Mapping[str, Any] | None = None,
    config: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    origins: Mapping[str, str] | None = None,
) -> EngineSettings:
    """Read the policy's and the PRM's settings: explicit values, then environment, then config file.

    Args:
        policy: Explicit policy settings (highest precedence), e.g. ``{"url": "http://..."}``; a
            key with ``None`` unsets what the environment or the file says.
        prm: Explicit PRM settings.
        config: A TOML config file (default: the file ``TTC_CONFIG`` names, if any).
        environ: The environment (default: ``os.environ``).
        origins: Names of the explicit settings for messages, e.g. ``{"policy.model": "--policy"}``.

    Raises:
        ValueError: An unknown variable or key, an invalid value, or values that contradict each
            other (a URL with an in-process backend); the message names the variable or key.
        FileNotFoundError: If the config file does not exist.

    Example:
        >>> load_engine_settings(policy={"model": "arith:large"}, environ={}).policy.model
        'arith:large'

    """
    env = os.environ if environ is None else environ
    file = read_config_file(config, env)
    if file is not None:
        _check_engine_tables(file)
    given, named = {"policy": policy, "prm": prm}, dict(origins or {})
    sections: dict[str, Any] = {}
    where: dict[str, str] = {}
    with reading(env, file):
        for cls in (ModelSettings, PRMSettings):
            section = cls.section()
            names = {k.removeprefix(f"{section}."): v for k, v in named.items() if k.startswith(f"{section}.")}
            settings, origin = cls.read(given[section], names)
            sections[section] = settings.resolved(origin, env)
            if settings.api_key is None and sections[section].api_key is not None:
                origin["api_key"] = API_KEY_FALLBACK
            where.update({f"{section}.{key}": name for key, name in origin.items()})
    return EngineSettings(policy=sections["policy"], prm=sections["prm"], origins=where)
