"""``ttc serve``: test-time compute strategies behind an OpenAI-compatible HTTP API.

In: the policy and PRM settings (:mod:`langchain_ttc.engines.settings`) and the server's own
(:mod:`.settings`). Out: a FastAPI application (:func:`create_app`) that any OpenAI client can call
with ``model="<strategy>[:<n>]"``; :func:`run_server` loads the engines once and serves it with uvicorn.
Every request is held to the bounds of :class:`ServeLimits` (:mod:`.limits`); ``/metrics`` and one
JSON log line per request report what it served (:mod:`.metrics`).
"""

from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.server import build_app, run_server, serve_app, uvicorn_config
from langchain_ttc.serving.settings import ServeLimits, ServeSettings, load_serve_settings

__all__ = [
    "ServeLimits",
    "ServeSettings",
    "StrategyCatalog",
    "build_app",
    "create_app",
    "load_serve_settings",
    "run_server",
    "serve_app",
    "uvicorn_config",
]
