"""The ``ttc`` command line: ``solve``, ``eval`` and ``calibrate`` (see :mod:`.main`)."""

from langchain_ttc.cli.main import main

__all__ = ["main"]
