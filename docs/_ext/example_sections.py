"""Griffe extension for the API reference: read the package's ``Example:`` sections as examples.

The package's Google-style docstrings title their doctests ``Example:``; griffe's Google parser
knows only the plural ``Examples:`` as an examples section and renders anything else as an
admonition of Markdown, where ``>>>`` lines turn into nested quotes. This rewrites the heading
before parsing, so every doctest renders as a Python code block. Loaded by ``mkdocs.yml``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headings to ``Examples:`` in every loaded docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the heading of the object's docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
