"""Model references: a local directory, a Hugging Face hub id, or an alias (``smollm2``, ``arith:small``).

In: what the user passed as ``model``. Out: a string the Auto classes accept, or a clear error
naming the parameter, the value and the fix, raised before any weights load.

Example:
    >>> resolve_model_reference("meta-llama/Llama-3.2-1B-Instruct")
    'meta-llama/Llama-3.2-1B-Instruct'

"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

MODEL_ALIASES: dict[str, Callable[[str], Path]] = {}
"""Model names and what they resolve to: a prefix ending in ``:`` names a family (``arith:small``), any
other alias one model (``smollm2``). The composition root (:mod:`langchain_ttc.wiring`) registers them,
so engines never import a task."""


def register_model_alias(alias: str, resolve: Callable[[str], Path]) -> None:
    """Let ``<alias><name>`` (an alias ending in ``:``), or ``alias`` itself, name a model.

    ``resolve(name)`` gives its directory (``name`` is empty for an alias that names one model).
    """
    MODEL_ALIASES[alias] = resolve


def resolve_model_reference(reference: str | os.PathLike[str], *, parameter: str = "model") -> str:
    """Return ``reference`` as a string, after checking a local path exists.

    A reference that looks like a path (absolute, starting with ``.`` or ``~``, or naming an
    existing file) must be a directory with a ``config.json``; anything else is treated as a hub id.

    Raises:
        FileNotFoundError: If a local path does not exist or is not a model directory.

    Example:
        >>> resolve_model_reference("meta-llama/Llama-3.2-1B-Instruct")
        'meta-llama/Llama-3.2-1B-Instruct'

    """
    text = os.fspath(reference)
    if not text.strip():
        raise ValueError(f"{parameter}={text!r} is empty; pass a model directory or a hub id.")
    path = Path(text).expanduser()
    looks_local = path.is_absolute() or text.startswith((".", "~")) or path.exists() or text.count("/") > 1
    if not looks_local:
        return text
    if not path.is_dir():
        raise FileNotFoundError(
            f"{parameter}={text!r} does not exist; pass a directory that holds a Hugging Face "
            "checkpoint (config.json, weights, tokenizer files) or a hub id such as 'org/name'."
        )
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{parameter}={text!r} has no config.json; pass a directory saved with save_pretrained()."
        )
    return str(path)


def resolve_reference(model: str) -> str:
    """Expand the aliases to local directories; other references pass through.

    Registered aliases (:data:`MODEL_ALIASES`: ``arith:small``, ``smollm2``, ...) resolve as registered.
    """
    for alias, resolve in MODEL_ALIASES.items():
        if model == alias or (alias.endswith(":") and model.startswith(alias)):
            return str(resolve(model.removeprefix(alias)))
    return model
