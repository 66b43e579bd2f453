"""Seeds: one independent random stream for every sample a strategy draws for a problem.

In: a run's base seed and a label naming the draw (``"pilots"``, ``("iteration", 3)``, ...). Out:
the seed of that draw, and a seed for each request of a batched call.

vLLM (in-process and server) samples completion ``k`` of a request with ``seed + k``. Seeds that
differ by less than ``n`` therefore share streams: the router's pilots drawn with ``s`` and its
strategy drawn with ``s + 1`` would repeat ``n - 1`` samples. So every draw of a problem gets its
own block of :data:`SEED_BLOCK` consecutive seeds (a stable hash of the base seed and the draw's
label picks the block), and the requests of one call take consecutive, disjoint ranges of that
block (:func:`seed_requests`). No two samples of one problem then share a seed on any backend.

Example:
    >>> derive_seed(0, "pilots") != derive_seed(0, "strategy")
    True
    >>> derive_seed(None, "pilots") is None
    True
    >>> from langchain_ttc.core.types import GenerationRequest
    >>> first, second = seed_requests(
    ...     [GenerationRequest(prompt="a", n=3), GenerationRequest(prompt="b", n=2)], derive_seed(7, "draw"))
    >>> second.seed - first.seed
    3

"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from langchain_ttc.core.types import GenerationRequest

SEED_BLOCK = 1 << 20
"""Seeds reserved for one draw: a call may sample up to this many completions without overlap."""
_BLOCKS = 1 << 40  # seeds stay below 2**60, inside the int64 range vLLM's server accepts


def derive_seed(seed: int | None, *label: str | int) -> int | None:
    """The first seed of the block reserved for the draw ``label`` of a run seeded with ``seed``.

    ``None`` stays ``None`` (unseeded sampling). Different labels give different blocks (up to a
    hash collision, about one in 2**40 per pair).
    """
    if seed is None:
        return None
    digest = hashlib.blake2b(repr((seed, *label)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % _BLOCKS) * SEED_BLOCK


def seed_requests(requests: Sequence[GenerationRequest], seed: int | None) -> list[GenerationRequest]:
    """The requests of one call, each seeded with its own range of consecutive seeds from ``seed``.

    Request ``j`` gets ``seed + (n of requests 0..j-1)``, so under vLLM's ``seed + k`` rule every
    sample of the call has its own seed.

    Raises:
        ValueError: If the call samples more completions than a block holds.

    """
    if seed is None:
        return [r.model_copy(update={"seed": None}) for r in requests]
    total = sum(r.n for r in requests)
    if total > SEED_BLOCK:
        raise ValueError(f"one call samples {total} completions, more than a seed block of {SEED_BLOCK}; split it.")
    seeded, offset = [], 0
    for request in requests:
        seeded.append(request.model_copy(update={"seed": seed + offset}))
        offset += request.n
    return seeded
