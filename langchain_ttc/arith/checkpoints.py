"""Where the shipped Arith checkpoints live (package data, so an installed wheel has them).

In: a checkpoint name (``"small"``, ``"large"``, ``"prm"`` or ``"prm-in-distribution"``). Out: the path of its
Hugging Face directory inside the installed package.

Example:
    >>> arith_checkpoint("small").name
    'small'

"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

CheckpointName = Literal["small", "large", "prm", "prm-in-distribution"]
"""The shipped checkpoints: two policies (small, large: 3.7x its size), the realistic PRM (``prm``, the
default: trained on another policy's errors) and the near-perfect one (``prm-in-distribution``)."""
MODELS_DIR = Path(__file__).resolve().parent / "models"


def arith_checkpoint(name: str = "small") -> Path:
    """The directory of a shipped Arith checkpoint.

    Raises:
        ValueError: If ``name`` is not a shipped checkpoint.

    """
    if name not in get_args(CheckpointName):
        raise ValueError(
            f"name={name!r} is not an Arith checkpoint; pass one of {', '.join(get_args(CheckpointName))}."
        )
    return MODELS_DIR / name
