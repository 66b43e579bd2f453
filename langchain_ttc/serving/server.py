"""Starting ``ttc serve``: load the policy and PRM once, build the strategy catalog, run uvicorn.

In: :class:`~langchain_ttc.engines.settings.EngineSettings` and :class:`.ServeSettings`. Out: the
application (:func:`build_app`), or a running server (:func:`run_server`, which blocks).

Example:
    >>> from langchain_ttc.engines.settings import load_engine_settings
    >>> run_server(load_engine_settings(), load_serve_settings(overrides={"port": 8000}))  # doctest: +SKIP

"""

from __future__ import annotations

import sys

from fastapi import FastAPI

from langchain_ttc.engines.settings import EngineSettings
from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.settings import ServeSettings


def build_app(engines: EngineSettings, serve: ServeSettings) -> FastAPI:
    """Load the engines (once) and build the application; local model paths are checked first.

    Raises:
        FileNotFoundError: A local model path that does not exist (named by its variable, key or flag).
        ValueError: Settings that do not fit together.

    """
    engines.check()
    options = {"max_tokens": serve.max_tokens} if serve.max_tokens is not None else {}
    catalog = StrategyCatalog(
        engines.load_policy(), engines.load_prm(), default_n=serve.default_n, max_n=serve.max_n, options=options
    )
    return create_app(catalog, api_key=serve.api_key, info={"engines": engines.describe()})


def run_server(engines: EngineSettings, serve: ServeSettings) -> None:
    """Serve until interrupted (uvicorn, one process; logs on stderr)."""
    import uvicorn

    app = build_app(engines, serve)
    print(f"ttc serve: http://{serve.host}:{serve.port}/v1 ({engines.describe()})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=serve.host, port=serve.port, log_level="info")
