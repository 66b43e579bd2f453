"""``ttc serve``: test-time compute strategies behind an OpenAI-compatible HTTP API.

In: the policy and PRM settings (:mod:`langchain_ttc.engines.settings`) and the server's own
(:mod:`.settings`). Out: a FastAPI application (:func:`create_app`) that any OpenAI client can call
with ``model="<strategy>[:<n>]"``; :func:`run_server` loads the engines once and serves it with uvicorn.
"""

from langchain_ttc.serving.app import create_app
from langchain_ttc.serving.catalog import StrategyCatalog
from langchain_ttc.serving.server import build_app, run_server
from langchain_ttc.serving.settings import ServeSettings, load_serve_settings

__all__ = ["ServeSettings", "StrategyCatalog", "build_app", "create_app", "load_serve_settings", "run_server"]
