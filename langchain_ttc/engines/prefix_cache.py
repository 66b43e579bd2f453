"""A PRM's key-value cache of scored prefixes, so a search reads each token about once.

A step search scores the same problem and step prefix again at every iteration: beam search's beams
at iteration ``t`` extend the ``t - 1`` steps the PRM read at iteration ``t - 1``. :class:`PrefixCache`
keeps, for each scored request, its token ids, the model's keys and values for those tokens and the
probability the PRM read at each position, in a least-recently-used store bounded in bytes. A new
request looks up its longest cached step prefix (its own steps, then one step fewer, and so on), keeps
the tokens the two share and runs the model on the rest only. Causal attention makes the result the
same as a full pass (up to floating-point rounding).

Example:
    >>> import torch
    >>> cache = PrefixCache(budget_bytes=1 << 20)
    >>> kv = [(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))]
    >>> cache.put("2+3?", ["2+3=5"], ids=[7, 8, 9], kv=kv, probabilities=torch.tensor([0.1, 0.2, 0.9]))
    >>> hit = cache.lookup("2+3?", ["2+3=5", "The answer is 5"], ids=[7, 8, 9, 10, 11])
    >>> hit.length, len(cache)
    (3, 1)

"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer, keys and values of shape ``(heads, tokens, head_dim)``."""


@dataclass(frozen=True)
class Hit:
    """A cached prefix of a request: its first ``length`` tokens, their keys, values and probabilities."""

    length: int
    kv: KV
    probabilities: torch.Tensor

    def prefix_kv(self) -> KV:
        """The keys and values of the shared ``length`` tokens."""
        return [(k[:, : self.length], v[:, : self.length]) for k, v in self.kv]


@dataclass(frozen=True)
class _Entry:
    ids: tuple[int, ...]
    kv: KV
    probabilities: torch.Tensor
    nbytes: int


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixCache:
    """Least-recently-used store of scored requests, keyed by problem and steps, bounded in bytes.

    Args:
        budget_bytes: The most bytes of keys, values and probabilities kept; the least recently used
            entries go first. An entry larger than the budget is not kept.

    """

    def __init__(self, *, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.nbytes = 0
        self._entries: OrderedDict[tuple[str, tuple[str, ...]], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, problem: str, steps: Sequence[str], ids: Sequence[int]) -> Hit | None:
        """The longest cached step prefix of ``steps`` and how many of ``ids`` it shares, or ``None``."""
        for k in range(len(steps), 0, -1):
            key = (problem, tuple(steps[:k]))
            entry = self._entries.get(key)
            if entry is None:
                continue
            self._entries.move_to_end(key)
            length = _common_length(entry.ids, ids)
            return Hit(length, entry.kv, entry.probabilities) if length else None
        return None

    def put(
        self, problem: str, steps: Sequence[str], *, ids: Sequence[int], kv: KV, probabilities: torch.Tensor
    ) -> None:
        """Keep one scored request (replacing an entry with the same problem and steps)."""
        nbytes = probabilities.nbytes + 8 * len(ids) + sum(k.nbytes + v.nbytes for k, v in kv)
        key = (problem, tuple(steps))
        if key in self._entries:
            self.nbytes -= self._entries.pop(key).nbytes
        if nbytes > self.budget_bytes:
            return
        self._entries[key] = _Entry(tuple(ids), kv, probabilities, nbytes)
        self.nbytes += nbytes
        while self.nbytes > self.budget_bytes:
            self.nbytes -= self._entries.popitem(last=False)[1].nbytes

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self.nbytes = 0
