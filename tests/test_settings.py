"""Configuration without code: precedence (flags > environment > file > defaults), eager errors that
name the variable or key, and every surface reading the same settings (CLI, ttc serve, Studio graphs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from langchain_ttc.cli.main import build_parser, engine_settings, main
from langchain_ttc.engines.loading import BACKENDS, PRM_PROTOCOLS
from langchain_ttc.engines.settings import (
    Backend,
    EngineSettings,
    ModelSettings,
    PRMSettings,
    Protocol,
    load_engine_settings,
)
from langchain_ttc.serving.settings import load_serve_settings

ROOT = Path(__file__).resolve().parent.parent


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ttc.toml"
    path.write_text(text)
    return path


def test_no_configuration_is_the_offline_arith_world() -> None:
    settings = load_engine_settings(environ={})
    assert settings.describe() == {
        "policy": {"backend": "transformers", "model": "arith:small"},
        "prm": {
            "backend": "transformers",
            "model": "arith:prm",
            "protocol": "math_shepherd",
            "trust_remote_code": False,
        },
    }
    assert load_serve_settings(environ={}).model_dump() == {
        "host": "127.0.0.1", "port": 8000, "api_key": None, "default_n": 16, "max_n": 64, "max_tokens": None,
        "answers": "math",
        "max_connections": 1024, "max_tokens_limit": 4096, "max_body_bytes": 1_048_576, "max_prompt_chars": 65_536,
        "max_prompt_tokens": 16_384, "request_timeout_s": 300.0, "max_in_flight": 16, "max_queue": 64,
        "shutdown_timeout_s": 30.0,
    }  # fmt: skip


def test_flags_win_over_environment_over_file_over_defaults(tmp_path: Path) -> None:
    config = _file(
        tmp_path,
        '[policy]\nurl = "http://file:1"\nmodel = "file-model"\ntokenizer = "file-tok"\n'
        '[prm]\nprotocol = "rlhflow"\n[serve]\nport = 9001\nmax_n = 32\n',
    )
    env = {"TTC_CONFIG": str(config), "TTC_POLICY_MODEL": "env-model", "TTC_SERVE_PORT": "9002"}
    settings = load_engine_settings(environ=env)
    assert (settings.policy.url, settings.policy.model, settings.policy.tokenizer) == (
        "http://file:1", "env-model", "file-tok",
    )  # fmt: skip
    assert settings.policy.backend == "openai" and settings.prm.protocol == "rlhflow"
    flagged = load_engine_settings(environ=env, policy={"model": "flag-model"})
    assert flagged.policy.model == "flag-model"
    serve = load_serve_settings(environ=env, overrides={"max_n": 20})
    assert (serve.port, serve.max_n, serve.default_n) == (9002, 20, 16)
    assert load_serve_settings(environ=env).max_n == 32


def test_the_openai_key_is_the_fallback_for_a_server_only() -> None:
    env = {"TTC_POLICY_URL": "http://127.0.0.1:1", "OPENAI_API_KEY": "sk-fallback"}
    assert load_engine_settings(environ=env).policy.api_key == "sk-fallback"
    assert load_engine_settings(environ={**env, "TTC_POLICY_API_KEY": "sk-own"}).policy.api_key == "sk-own"
    assert load_engine_settings(environ={"OPENAI_API_KEY": "sk-fallback"}).policy.api_key is None
    assert "sk-own" not in repr(load_engine_settings(environ={**env, "TTC_POLICY_API_KEY": "sk-own"}))


@pytest.mark.parametrize(
    ("env", "file", "message"),
    [
        ({"TTC_POLICY_BACKEND": "tgi"}, None, "TTC_POLICY_BACKEND='tgi' is invalid: input should be 'transformers'"),
        ({"TTC_POLICY_BACKEND": "openai"}, None, "TTC_POLICY_BACKEND='openai' runs the policy on a server, but no URL"),
        ({"TTC_POLICY_URL": "127.0.0.1:8000"}, None, "TTC_POLICY_URL='127.0.0.1:8000' is not an http(s) URL"),
        (
            {"TTC_PRM_URL": "http://x:1", "TTC_PRM_BACKEND": "vllm"},
            None,
            "TTC_PRM_URL is set but TTC_PRM_BACKEND='vllm'",
        ),
        ({"TTC_POLICY_BAKEND": "vllm"}, None, "TTC_POLICY_BAKEND is not a setting; use one of TTC_POLICY_BACKEND"),
        (
            {"TTC_PRM_PROTOCOL": "shepherd"},
            None,
            "TTC_PRM_PROTOCOL='shepherd' is invalid: input should be 'math_shepherd', 'rlhflow' or 'qwen_math'",
        ),
        ({"TTC_PRM_TRUST_REMOTE_CODE": "maybe"}, None, "TTC_PRM_TRUST_REMOTE_CODE='maybe' is invalid"),
        ({}, "[policy]\nbakend = 'vllm'\n", "[policy] bakend is not a setting; use one of backend"),
        ({}, "[polcy]\nbackend = 'vllm'\n", "[polcy] is not a section"),
        ({}, "[prm]\nprotocol = 'x'\n", "[prm] protocol='x' is invalid"),
        ({}, "[policy\n", "is not valid TOML"),
        ({}, "backend = 'vllm'\n", "backend = 'vllm' is not in a table; put it under [policy] or [prm]"),
        ({}, "policy = 'vllm'\n", "policy = 'vllm' is not in a table"),
        ({"TTC_CONFIG": "/no/such/ttc.toml"}, None, "TTC_CONFIG='/no/such/ttc.toml' does not exist"),
    ],
)
def test_bad_settings_fail_early_naming_the_variable_or_key(
    tmp_path: Path, env: dict[str, str], file: str | None, message: str
) -> None:
    if file is not None:
        env = {**env, "TTC_CONFIG": str(_file(tmp_path, file))}
    with pytest.raises((ValueError, FileNotFoundError)) as raised:
        load_engine_settings(environ=env)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TTC_SERVE_PORT": "http"}, "TTC_SERVE_PORT='http' is invalid"),
        ({"TTC_SERVE_MAX_N": "8"}, "TTC_SERVE_DEFAULT_N / TTC_SERVE_MAX_N: default_n=16 exceeds max_n=8"),
        ({"TTC_SERVE_APIKEY": "x"}, "TTC_SERVE_APIKEY is not a setting; use one of"),
    ],
)
def test_bad_serve_settings_fail_early(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        load_serve_settings(environ=env)
    assert message in str(raised.value)


def test_each_layer_reads_its_own_tables_and_serve_knows_them_all(tmp_path: Path) -> None:
    shared = _file(tmp_path, '[policy]\nmodel = "arith:large"\n[serve]\nport = 9001\n[studio]\ntheme = "dark"\n')
    assert load_engine_settings(config=shared, environ={}).policy.model == "arith:large"  # [serve] is not its business
    with pytest.raises(ValueError, match=r"\[studio\] is not a section; use \[policy\], \[prm\] or \[serve\]"):
        load_serve_settings(config=shared, environ={})
    (tmp_path / "serve.toml").write_text('[policy]\nmodel = "arith:large"\n[serve]\nport = 9001\n')
    assert load_serve_settings(config=tmp_path / "serve.toml", environ={}).port == 9001
    with pytest.raises(ValueError, match=r"\[serve\] prot is not a setting; use one of host, port"):
        load_serve_settings(config=_file(tmp_path, "[serve]\nprot = 1\n"), environ={})
    with pytest.raises(FileNotFoundError, match=r"config='/no/such.toml' does not exist"):
        load_serve_settings(config="/no/such.toml", environ={})


def test_explicit_values_name_themselves_and_none_unsets() -> None:
    env = {"TTC_POLICY_MODEL": "env-model", "TTC_PRM_PROTOCOL": "rlhflow"}
    settings = load_engine_settings(environ=env, policy={"model": None}, prm={"protocol": None})
    assert settings.policy.model == "arith:small" and settings.prm.protocol == "math_shepherd"
    with pytest.raises(ValueError, match=r"--prm-protocol='x' is invalid: input should be 'math_shepherd'"):
        load_engine_settings(environ={}, prm={"protocol": "x"}, origins={"prm.protocol": "--prm-protocol"})
    with pytest.raises(
        ValueError, match=r"policy.bakend='vllm' is not an option of ModelSettings; pass one of api_key"
    ):
        load_engine_settings(environ={}, policy={"bakend": "vllm"})
    with pytest.raises(ValueError, match=r"--port=70000 is invalid: input should be less than or equal to 65535"):
        load_serve_settings(environ={}, overrides={"port": 70000}, origins={"port": "--port"})
    served = load_engine_settings(environ={"TTC_PRM_URL": "http://x:1", "OPENAI_API_KEY": "sk"})
    assert served.origins["prm.api_key"] == "OPENAI_API_KEY" and served.origins["policy.model"] == "TTC_POLICY_MODEL"


def test_the_literal_types_name_the_loaders_backends_and_protocols() -> None:
    assert get_args(Backend) == BACKENDS and get_args(Protocol) == PRM_PROTOCOLS


def test_settings_read_without_the_loader_cannot_load_engines() -> None:
    with pytest.raises(ValueError, match=r"policy settings \{\} name no backend and model.*load_engine_settings\(\)"):
        EngineSettings(policy=ModelSettings.model_construct(), prm=PRMSettings.model_construct()).load_policy()


def test_cli_flags_map_to_settings_and_name_themselves_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TTC_CONFIG", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TTC_POLICY_MODEL", "arith:large")
    monkeypatch.setenv("TTC_PRM_PROTOCOL", "rlhflow")
    args = build_parser().parse_args(["solve", "p", "--prm-protocol", "math_shepherd"])
    settings = engine_settings(args)
    assert settings.policy.model == "arith:large" and settings.prm.protocol == "math_shepherd"
    args = build_parser().parse_args(["solve", "p", "--policy", "http://127.0.0.1:1", "--prm", "./prm"])
    settings = engine_settings(args)
    assert settings.policy.backend == "openai" and settings.policy.url == "http://127.0.0.1:1"
    assert settings.policy.model is None  # the served name is asked from the server, not the env's checkpoint
    with pytest.raises(FileNotFoundError) as raised:
        settings.check()
    assert "--prm='./prm' does not exist" in str(raised.value)


def test_cli_reports_a_bad_variable_as_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TTC_POLICY_BACKEND", "tgi")
    assert main(["solve", "What is 2+2?", "--strategy", "majority_vote", "--n", "1"]) == 2
    assert "ttc solve: error: TTC_POLICY_BACKEND='tgi' is invalid" in capsys.readouterr().err
    monkeypatch.setenv("TTC_POLICY_BACKEND", "transformers")
    monkeypatch.setenv("TTC_SERVE_PORT", "not-a-port")
    assert main(["serve"]) == 2
    assert "ttc serve: error: TTC_SERVE_PORT='not-a-port' is invalid" in capsys.readouterr().err


def test_every_studio_graph_reads_the_settings_and_langgraph_json_installs_them() -> None:
    spec = json.loads((ROOT / "langgraph.json").read_text())
    assert spec["dependencies"] == [".[transformers]"] and "HF_HUB_OFFLINE" not in json.dumps(spec)
    for path in spec["graphs"].values():
        source = (ROOT / path.split(":")[0]).read_text()
        assert "load_engine_settings()" in source and "arith:" not in source, path
