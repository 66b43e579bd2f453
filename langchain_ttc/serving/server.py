"""Starting ``ttc serve``: load the policy and PRM once, build the strategy catalog, run uvicorn.

In: :class:`~langchain_ttc.engines.settings.EngineSettings` and :class:`.ServeSettings`. Out: the
application (:func:`build_app`), the uvicorn configuration that serves it (:func:`uvicorn_config`:
graceful shutdown, connection limit, logging), or a running server (:func:`run_server`,
:func:`serve_app`, which block).

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections and lets the requests in flight finish
for up to ``shutdown_timeout_s`` (streams too), then cancels what is left (its runs with it).
Logs go to stderr: uvicorn's own, the application's (``langchain_ttc.serving``) and one JSON line
per request (``langchain_ttc.serving.requests``, see :mod:`.metrics`), which replaces uvicorn's
access log.

Example:
    >>> from langchain_ttc.engines.settings import load_engine_settings
    >>> run_server(load_engine_settings(), load_serve_settings(overrides={"port": 8000}))  # doctest: +SKIP

"""

from __future__ import annotations

import copy
import math
import sys
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from langchain_ttc.engines.settings import EngineSettings
from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.settings import ServeSettings

if TYPE_CHECKING:
    import uvicorn


def build_app(engines: EngineSettings, serve: ServeSettings) -> FastAPI:
    """Load the engines (once) and build the application; local model paths are checked first.

    Raises:
        FileNotFoundError: A local model path that does not exist (named by its variable, key or flag).
        ValueError: Settings that do not fit together.

    """
    engines.check()
    options: dict[str, Any] = {"answers": serve.answers}
    if serve.max_tokens is not None:
        options["max_tokens"] = serve.max_tokens
    catalog = StrategyCatalog(
        engines.load_policy(), engines.load_prm(), default_n=serve.default_n, max_n=serve.max_n, options=options
    )
    return create_app(catalog, api_key=serve.api_key, info={"engines": engines.describe()}, limits=serve)


def log_config() -> dict[str, Any]:
    """The logging configuration: uvicorn's, plus the application's loggers (all on stderr).

    ``langchain_ttc.serving.requests`` writes its JSON lines bare (one per request); the rest of
    ``langchain_ttc.serving`` is prefixed with the level and the logger's name.
    """
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["ttc"] = {"format": "%(levelname)s %(name)s: %(message)s"}
    config["formatters"]["ttc_json"] = {"format": "%(message)s"}
    config["handlers"]["ttc"] = {"formatter": "ttc", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    config["handlers"]["ttc_json"] = {
        "formatter": "ttc_json",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["langchain_ttc.serving"] = {"handlers": ["ttc"], "level": "INFO", "propagate": False}
    config["loggers"]["langchain_ttc.serving.requests"] = {
        "handlers": ["ttc_json"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def uvicorn_config(app: FastAPI, serve: ServeSettings, **overrides: Any) -> uvicorn.Config:
    """How uvicorn serves ``app``: address, graceful shutdown, connection limit and logs from ``serve``.

    Args:
        app: The application (:func:`build_app` or :func:`~.app.create_app`).
        serve: The server's settings (``host``, ``port``, ``shutdown_timeout_s``, ``max_connections``).
        **overrides: Any other ``uvicorn.Config`` option (tests pass ``log_config=None``).

    """
    import uvicorn

    options: dict[str, Any] = {
        "host": serve.host,
        "port": serve.port,
        "log_level": "info",
        "log_config": log_config(),
        "access_log": False,  # one JSON line per request instead (langchain_ttc.serving.requests)
        "timeout_graceful_shutdown": math.ceil(serve.shutdown_timeout_s),
        "limit_concurrency": serve.max_connections,
        **overrides,
    }
    return uvicorn.Config(app, **options)


def serve_app(app: FastAPI, serve: ServeSettings) -> None:
    """Serve ``app`` until SIGTERM or Ctrl-C, then drain the requests in flight (see :func:`uvicorn_config`)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, serve)).run()


def run_server(engines: EngineSettings, serve: ServeSettings) -> None:
    """Serve until interrupted (uvicorn, one process; logs on stderr)."""
    app = build_app(engines, serve)
    print(f"ttc serve: http://{serve.host}:{serve.port}/v1 ({engines.describe()})", file=sys.stderr, flush=True)
    serve_app(app, serve)
