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
variable or file key, the value and the fix.

Example:
    >>> settings = load_engine_settings(environ={"TTC_POLICY_URL": "http://127.0.0.1:8000"})
    >>> settings.policy.backend, settings.policy.url, settings.prm.model
    ('openai', 'http://127.0.0.1:8000', 'arith:prm')
    >>> load_engine_settings(environ={"TTC_PRM_PROTOCOL": "shepherd"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: TTC_PRM_PROTOCOL='shepherd' is invalid: ...; pass one of math_shepherd, rlhflow, qwen_math.

"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langchain_ttc.engines.base import PolicyEngine, PRMEngine
from langchain_ttc.engines.loading import BACKENDS, PRM_PROTOCOLS, load_policy, load_prm
from langchain_ttc.engines.references import resolve_model_reference, resolve_reference

CONFIG_VARIABLE = "TTC_CONFIG"
"""The environment variable naming the TOML config file."""
API_KEY_FALLBACK = "OPENAI_API_KEY"
"""Read for a server's API key when the section sets none (the OpenAI clients' own variable)."""
DEFAULT_MODELS = {"policy": "arith:small", "prm": "arith:prm"}
"""The in-process models used when none is configured: the Arith checkpoints shipped in the package."""

Backend = Literal["transformers", "vllm", "openai"]
Protocol = Literal["math_shepherd", "rlhflow", "qwen_math"]
assert get_args(Backend) == BACKENDS and get_args(Protocol) == PRM_PROTOCOLS  # one list of names each

S = TypeVar("S", bound=BaseModel)


class ModelSettings(BaseModel):
    """Where one model runs: in process (a checkpoint) or on an OpenAI-compatible server (a URL).

    Attributes:
        backend: ``transformers`` or ``vllm`` (in process) or ``openai`` (a vLLM/OpenAI-compatible
            server). Default: ``openai`` when ``url`` is set, else ``transformers``.
        url: The server's base URL (a vLLM server, or a router in front of replicas).
        model: In process: a directory, a hub id or an alias (``arith:small``). On a server: the
            served model name (default: the first one the server lists at ``/v1/models``).
        api_key: The server's bearer token (default: ``OPENAI_API_KEY`` for a server).
        tokenizer: A server's tokenizer (a directory or hub id) that renders prompts locally
            (default: loaded from the served model name).

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend | None = Field(None, description="transformers, vllm (in process) or openai (a server).")
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


class PRMSettings(ModelSettings):
    """Where the PRM runs, and how it reads steps.

    Attributes:
        protocol: ``math_shepherd``, ``rlhflow`` (generative PRMs) or ``qwen_math`` (a reward model);
            never guessed from the model name.
        trust_remote_code: Run the checkpoint's own modelling code (transformers, ``qwen_math``).

    """

    protocol: Protocol = Field("math_shepherd", description="How the PRM reads steps.")
    trust_remote_code: bool = Field(False, description="Run the checkpoint's own modelling code (transformers).")


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
        sections: list[tuple[str, ModelSettings]] = [("policy", self.policy)] + ([("prm", self.prm)] if prm else [])
        for section, settings in sections:
            if not settings.on_server and settings.model:
                resolve_model_reference(resolve_reference(settings.model), parameter=self.origins[f"{section}.model"])

    def load_policy(self) -> PolicyEngine:
        """The policy engine (loaded once per process; a server's model name is asked once)."""
        p = self.policy
        if p.on_server:
            assert p.url is not None
            return load_policy(p.url, "openai", served_model_name=p.model, api_key=p.api_key, tokenizer=p.tokenizer)
        assert p.backend is not None and p.model is not None
        return load_policy(p.model, p.backend)

    def load_prm(self) -> PRMEngine:
        """The PRM engine (loaded once per process)."""
        p = self.prm
        if p.on_server:
            assert p.url is not None
            return load_prm(
                p.url, "openai", p.protocol, served_model_name=p.model, api_key=p.api_key, tokenizer=p.tokenizer
            )
        assert p.backend is not None and p.model is not None
        return load_prm(p.model, p.backend, p.protocol, trust_remote_code=p.trust_remote_code)

    def describe(self) -> dict[str, Any]:
        """Both sections without API keys."""
        return {"policy": self.policy.describe(), "prm": self.prm.describe()}


def read_config_file(path: str | os.PathLike[str], *, origin: str = CONFIG_VARIABLE) -> dict[str, Any]:
    """The tables of a TOML config file.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not valid TOML (the message names the file and the error).

    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{origin}={os.fspath(path)!r} does not exist; pass the path of a TOML config file.")
    try:
        return tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{origin}={os.fspath(path)!r} is not valid TOML ({error}); fix the file.") from None


def layered_settings(
    cls: type[S],
    *,
    section: str,
    env_prefix: str,
    environ: Mapping[str, str],
    file: Mapping[str, Any],
    file_name: str,
    overrides: Mapping[str, Any] | None = None,
    origins: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge one section's values: overrides over environment over file; return values and their origins.

    Args:
        cls: The section's settings model (its fields are the known keys).
        section: The TOML table, e.g. ``"policy"``.
        env_prefix: The variables' prefix, e.g. ``"TTC_POLICY_"``.
        environ: The environment (empty values count as unset).
        file: The config file's tables.
        file_name: The file's name, for messages.
        overrides: Explicit values (a key with ``None`` unsets what the environment or file says).
        origins: What to call each override in messages (``"--policy"``); default ``section.key``.

    Raises:
        ValueError: An unknown variable with the prefix, or an unknown key in the table.

    """
    known = list(cls.model_fields)
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    table = file.get(section, {})
    if not isinstance(table, Mapping):
        raise ValueError(f"{file_name}: {section} = {table!r} is not a table; write it as [{section}].")
    for key, value in table.items():
        if key not in known:
            raise ValueError(f"{file_name}: [{section}] {key} is not a setting; use one of {', '.join(known)}.")
        values[key], where[key] = value, f"{file_name} [{section}] {key}"
    for variable, value in environ.items():
        if not variable.startswith(env_prefix) or not value:
            continue
        key = variable.removeprefix(env_prefix).lower()
        if key not in known:
            names = ", ".join(env_prefix + k.upper() for k in known)
            raise ValueError(f"{variable} is not a setting; use one of {names}.")
        values[key], where[key] = value, variable
    for key, value in (overrides or {}).items():
        if key not in known:
            raise ValueError(f"{section}.{key} is not a setting; use one of {', '.join(known)}.")
        if value is None:
            values.pop(key, None)
            where.pop(key, None)
        else:
            values[key], where[key] = value, (origins or {}).get(key, f"{section}.{key}")
    for key in known:
        where.setdefault(key, f"{env_prefix}{key.upper()}")
    return values, where


def build_settings(cls: type[S], values: Mapping[str, Any], origins: Mapping[str, str]) -> S:
    """Validate ``values`` as ``cls``; an error names each bad value's origin, the value and the fix.

    Raises:
        ValueError: If a value is invalid.

    """
    try:
        return cls(**values)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            if not item["loc"]:  # a check across fields: its message names them
                problems.append(item["msg"].removeprefix("Value error, "))
                continue
            key = str(item["loc"][0])
            annotation = cls.model_fields[key].annotation if key in cls.model_fields else None
            choices = [a for arg in get_args(annotation) for a in (get_args(arg) or ())] or list(get_args(annotation))
            choices = [c for c in choices if isinstance(c, str)]
            if annotation is bool:
                fix = "pass true or false"
            else:
                fix = f"pass one of {', '.join(choices)}" if choices else f"pass {_describe(cls, key)}"
            problems.append(f"{origins.get(key, key)}={item['input']!r} is invalid: {item['msg'].lower()}; {fix}.")
        raise ValueError("; ".join(problems)) from None


def _describe(cls: type[BaseModel], key: str) -> str:
    info = cls.model_fields.get(key)
    return (info.description or "a valid value").rstrip(".").lower() if info else "a valid value"


def _finish_model(
    section: str, settings: ModelSettings, where: dict[str, str], environ: Mapping[str, str]
) -> ModelSettings:
    """Fill the defaults that depend on other fields, and check the fields fit together."""
    backend = settings.backend or ("openai" if settings.url else "transformers")
    update: dict[str, Any] = {"backend": backend}
    if backend == "openai":
        if not settings.url:
            raise ValueError(
                f"{where['backend']}='openai' runs the {section} on a server, but no URL is set; "
                f"set {where['url']} (for example http://127.0.0.1:8000)."
            )
        if not settings.url.startswith(("http://", "https://")):
            raise ValueError(f"{where['url']}={settings.url!r} is not an http(s) URL; pass e.g. http://127.0.0.1:8000.")
        if settings.api_key is None and environ.get(API_KEY_FALLBACK):
            update["api_key"], where["api_key"] = environ[API_KEY_FALLBACK], API_KEY_FALLBACK
    else:
        for key in ("url", "api_key", "tokenizer"):
            if getattr(settings, key):
                raise ValueError(
                    f"{where[key]} is set but {where['backend']}={backend!r} runs the {section} in process; "
                    f"unset {where[key]}, or set {where['backend']}=openai to use a server."
                )
        update["model"] = settings.model or DEFAULT_MODELS[section]
    return settings.model_copy(update=update)


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
        policy: Explicit policy settings (highest precedence), e.g. ``{"url": "http://..."}``.
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
    env = dict(os.environ if environ is None else environ)
    file_origin = "config" if config is not None else CONFIG_VARIABLE
    path = config if config is not None else env.get(CONFIG_VARIABLE) or None
    file = read_config_file(path, origin=file_origin) if path else {}
    file_name = os.fspath(path) if path else "(no file)"
    for table in file:
        if table not in ("policy", "prm", "serve"):
            raise ValueError(f"{file_name}: [{table}] is not a section; use [policy], [prm] or [serve].")
    named = dict(origins or {})
    sections: dict[str, Any] = {}
    where: dict[str, str] = {}
    for section, cls, given in (("policy", ModelSettings, policy), ("prm", PRMSettings, prm)):
        prefix = {k.removeprefix(f"{section}."): v for k, v in named.items() if k.startswith(f"{section}.")}
        values, origin = layered_settings(
            cls, section=section, env_prefix=f"TTC_{section.upper()}_", environ=env, file=file,
            file_name=file_name, overrides=given, origins=prefix,
        )  # fmt: skip
        parsed = build_settings(cls, values, origin)
        sections[section] = _finish_model(section, parsed, origin, env)
        where.update({f"{section}.{k}": v for k, v in origin.items()})
    return EngineSettings(policy=sections["policy"], prm=sections["prm"], origins=where)
