"""Process reward models on Hugging Face transformers, one class per published protocol.

In: :class:`~langchain_ttc.core.types.ScoreRequest` objects (a problem and its steps). Out: one score in
[0, 1] per step. Protocols are chosen explicitly, never guessed from a model name:

- :class:`MathShepherdPRM`: the step tag ``ки`` after each step; score = P("+") normalised over
  {"+", "-"} read after each tag (``peiyi9979/math-shepherd-mistral-7b-prm``, the Arith PRM);
- :class:`RLHFlowPRM`: each step a user turn, the assistant answers "+"; score = P("+") over
  {"+", "-"} at each answer (``RLHFlow/Llama3.1-8B-PRM-Deepseek-Data``);
- :class:`QwenMathPRM`: ``<extra_0>`` after each step of the assistant turn, a two-class head;
  score = the positive class's probability at each ``<extra_0>`` (``Qwen/Qwen2.5-Math-PRM-7B``).

Requests are batched (right padded, so causal attention keeps each row's scores independent of the
others) with a configurable batch size. The generative protocols keep a prefix cache
(:class:`~langchain_ttc.engines.prefix_cache.PrefixCache`, ``prefix_cache_mib``): a request whose
problem and first steps were scored before runs the model only on its new tokens, so a step search
reads each token about once instead of once per iteration; ``StepScores.cached_tokens`` counts the
tokens taken from it. Tokenizers are checked for the protocol's special tokens
before any weights load. ``ainvoke`` runs in a stoppable worker thread: a cancelled caller starts no
further batch (:func:`~langchain_ttc.engines.batching.in_stoppable_thread`).

Example:
    >>> from langchain_ttc.arith.checkpoints import arith_checkpoint
    >>> prm = MathShepherdPRM.from_pretrained(arith_checkpoint("prm"))
    >>> scores = prm.invoke([{"problem": "Keep only the last digit after each step. What is 2+3?",
    ...                       "steps": ["2+3=5. The answer is \\\\boxed{5}."]}])
    >>> len(scores[0].scores)
    1

"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DynamicCache,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from langchain_ttc.core.types import ScoreRequest, StepScores
from langchain_ttc.engines.base import PRMEngine
from langchain_ttc.engines.batching import check_stop, in_stoppable_thread
from langchain_ttc.engines.math_shepherd_format import DEFAULT_BAD_TOKEN, DEFAULT_GOOD_TOKEN, DEFAULT_STEP_TAG
from langchain_ttc.engines.prefix_cache import KV, Hit, PrefixCache
from langchain_ttc.engines.prm_formats import GenerativeFormat, MathShepherdFormat, QwenMathFormat, RLHFlowFormat
from langchain_ttc.engines.references import resolve_model_reference

DEFAULT_PREFIX_CACHE_MIB = 512
"""The generative PRMs' prefix cache budget (MiB of keys and values) unless ``prefix_cache_mib`` says otherwise."""


def _pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


@dataclass(frozen=True)
class _Row:
    """One request to score: its problem and steps, its token ids and the positions scores are read at."""

    problem: str
    steps: list[str]
    ids: list[int]
    positions: list[int]


class _BatchedPRM(PRMEngine):
    """Shared batching: subclasses encode a request and read scores from a forward pass."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.provider, self.model_name = "transformers", getattr(model, "name_or_path", None) or None
        self._pad_id = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)
        self._lock = threading.Lock()

    def _encode(self, request: ScoreRequest) -> tuple[list[int], list[int]]:
        """The request's token ids and the positions its step scores are read at."""
        raise NotImplementedError

    def _read(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: list[list[int]]
    ) -> list[list[float]]:
        raise NotImplementedError

    def _score_rows(self, rows: list[_Row]) -> list[tuple[list[float], int]]:
        """Each row's step scores and the tokens taken from a cache (none here: one padded forward pass)."""
        input_ids, attention_mask = _pad_right([r.ids for r in rows], self._pad_id)
        return [(scores, 0) for scores in self._read(input_ids, attention_mask, [r.positions for r in rows])]

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        rows = {i: _Row(r.problem, r.steps, *self._encode(r)) for i, r in enumerate(requests) if r.steps}
        results = [StepScores(scores=[], num_tokens=0) for _ in requests]
        todo = [i for i, row in rows.items() if row.ids]
        with self._lock, torch.no_grad():
            for start in range(0, len(todo), self.batch_size):
                check_stop()  # a cancelled caller (see in_stoppable_thread) starts no further batch
                chunk = todo[start : start + self.batch_size]
                for i, (scores, cached) in zip(chunk, self._score_rows([rows[i] for i in chunk]), strict=True):
                    if len(scores) != len(requests[i].steps):
                        raise ValueError(
                            f"the PRM found {len(scores)} step positions for {len(requests[i].steps)} steps; the "
                            "input is longer than the model's context or a step contains the protocol's special token."
                        )
                    results[i] = StepScores(scores=scores, num_tokens=len(rows[i].ids), cached_tokens=cached)
        return results

    async def _ascore(self, requests: list[ScoreRequest]) -> list[StepScores]:
        return await in_stoppable_thread(self._score, requests)


class GenerativePRM(_BatchedPRM):
    """A causal-LM PRM read as P(good) / (P(good) + P(bad)) at the positions its format names.

    Args:
        model: The causal LM.
        tokenizer: Its tokenizer.
        prm_format: The protocol: how a request becomes tokens and where scores are read.
        batch_size: Requests per forward pass.
        prefix_cache_mib: MiB of keys and values kept for scored prefixes (0 turns the cache off).

    Raises:
        ValueError: If ``prefix_cache_mib`` is negative or the tokenizer lacks the format's tokens.

    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        prm_format: GenerativeFormat,
        batch_size: int = 16,
        prefix_cache_mib: float = DEFAULT_PREFIX_CACHE_MIB,
    ) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size)
        if prefix_cache_mib < 0:
            raise ValueError(
                f"prefix_cache_mib={prefix_cache_mib} must be at least 0; pass 0 to turn the PRM's prefix cache off."
            )
        self.prm_format = prm_format
        self._candidate_ids = list(prm_format.check(tokenizer))
        self.prefix_cache = PrefixCache(budget_bytes=int(prefix_cache_mib * 2**20)) if prefix_cache_mib else None

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[..., self._candidate_ids].float().softmax(dim=-1)[..., 0].cpu()

    def _score_rows(self, rows: list[_Row]) -> list[tuple[list[float], int]]:
        if self.prefix_cache is None:
            return super()._score_rows(rows)
        hits = [self.prefix_cache.lookup(r.problem, r.steps, r.ids) for r in rows]
        starts = [hit.length if hit else 0 for hit in hits]
        todo = [i for i, row in enumerate(rows) if starts[i] < len(row.ids)]
        computed = dict(zip(todo, self._forward_from([rows[i] for i in todo], [hits[i] for i in todo]), strict=True))
        out = []
        for i, (row, hit, start) in enumerate(zip(rows, hits, starts, strict=True)):
            if i in computed:
                probabilities, kv = computed[i]
                if hit is not None:
                    probabilities = torch.cat([hit.probabilities[:start], probabilities])
                    kv = [
                        (torch.cat([k0, k1], 1), torch.cat([v0, v1], 1))
                        for (k0, v0), (k1, v1) in zip(hit.prefix_kv(), kv, strict=True)
                    ]
                self.prefix_cache.put(row.problem, row.steps, ids=row.ids, kv=kv, probabilities=probabilities)
            else:  # the whole request was cached
                assert hit is not None
                probabilities = hit.probabilities
            out.append(([float(probabilities[p - 1]) for p in row.positions], start))
        return out

    def _forward_from(self, rows: list[_Row], hits: list[Hit | None]) -> list[tuple[torch.Tensor, KV]]:
        """Run the model on each row's tokens after its cached prefix; each row's new probabilities and keys/values.

        The cached prefixes sit left-aligned in a past of the longest prefix's length, the rest masked out;
        the new tokens follow, right padded, at their true positions.
        """
        if not rows:
            return []
        device = self.model.device
        starts = [hit.length if hit else 0 for hit in hits]
        past, width = max(starts), max(len(r.ids) - s for r, s in zip(rows, starts, strict=True))
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), past + width), dtype=torch.long)
        position_ids = torch.arange(width).repeat(len(rows), 1)
        for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
            new = row.ids[start:]
            input_ids[i, : len(new)] = torch.tensor(new)
            mask[i, :start] = 1
            mask[i, past : past + len(new)] = 1
            position_ids[i] += start
        cache = None
        if past:
            prefixes = {i: hit.prefix_kv() for i, hit in enumerate(hits) if hit is not None}
            layers = []
            for layer, (k, v) in enumerate(next(iter(prefixes.values()))):
                keys = k.new_zeros((len(rows), k.shape[0], past, k.shape[2]))
                values = v.new_zeros((len(rows), v.shape[0], past, v.shape[2]))
                for i, prefix in prefixes.items():
                    keys[i, :, : starts[i]], values[i, :, : starts[i]] = prefix[layer]
                layers.append((keys, values))
            cache = DynamicCache(ddp_cache_data=layers)
        output = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids.to(device),
            past_key_values=cache,
            use_cache=True,
        )
        probabilities = self._probabilities(output.logits)
        computed = []
        for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
            n = len(row.ids) - start
            kv = [
                (layer.keys[i, :, past : past + n].clone(), layer.values[i, :, past : past + n].clone())
                for layer in output.past_key_values.layers
            ]
            computed.append((probabilities[i, :n].clone(), kv))
        return computed

    def _encode(self, request: ScoreRequest) -> tuple[list[int], list[int]]:
        return self.prm_format.encode(self.tokenizer, request.problem, request.steps)

    def _read(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: list[list[int]]
    ) -> list[list[float]]:
        logits = self.model(
            input_ids=input_ids.to(self.model.device), attention_mask=attention_mask.to(self.model.device)
        ).logits
        probabilities = self._probabilities(logits)
        return [
            [float(probabilities[row, p - 1]) for p in row_positions] for row, row_positions in enumerate(positions)
        ]

    @classmethod
    def _load(
        cls,
        model: str | os.PathLike[str],
        prm_format: GenerativeFormat,
        *,
        batch_size: int,
        prefix_cache_mib: float,
        dtype: Any,
        device: str,
        **kwargs: Any,
    ) -> Any:
        reference = resolve_model_reference(model, parameter="prm")
        tokenizer = AutoTokenizer.from_pretrained(reference)
        prm_format.check(tokenizer)  # before the weights load
        loaded = AutoModelForCausalLM.from_pretrained(reference, dtype=dtype, **kwargs)
        loaded.to(device)  # type: ignore[arg-type]
        return cls(loaded, tokenizer, prm_format=prm_format, batch_size=batch_size, prefix_cache_mib=prefix_cache_mib)


class MathShepherdPRM(GenerativePRM):
    """A causal LM scored with the Math-Shepherd protocol (see the module docs)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        step_tag: str = DEFAULT_STEP_TAG,
        good_token: str = DEFAULT_GOOD_TOKEN,
        bad_token: str = DEFAULT_BAD_TOKEN,
        batch_size: int = 16,
        prefix_cache_mib: float = DEFAULT_PREFIX_CACHE_MIB,
        prm_format: GenerativeFormat | None = None,
    ) -> None:
        prm_format = prm_format or MathShepherdFormat(step_tag=step_tag, good_token=good_token, bad_token=bad_token)
        super().__init__(
            model, tokenizer, prm_format=prm_format, batch_size=batch_size, prefix_cache_mib=prefix_cache_mib
        )

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *,
        step_tag: str = DEFAULT_STEP_TAG,
        good_token: str = DEFAULT_GOOD_TOKEN,
        bad_token: str = DEFAULT_BAD_TOKEN,
        batch_size: int = 16,
        prefix_cache_mib: float = DEFAULT_PREFIX_CACHE_MIB,
        dtype: str | torch.dtype = "float32",
        device: str = "cpu",
        **model_kwargs: Any,
    ) -> MathShepherdPRM:
        """Load a Math-Shepherd PRM from a local directory or a hub id.

        Raises:
            FileNotFoundError: If ``model`` is a local path that does not exist.
            ValueError: If the tokenizer lacks the step tag or the good/bad tokens, or ``prefix_cache_mib`` < 0.

        """
        prm_format = MathShepherdFormat(step_tag=step_tag, good_token=good_token, bad_token=bad_token)
        return cls._load(
            model,
            prm_format,
            batch_size=batch_size,
            prefix_cache_mib=prefix_cache_mib,
            dtype=dtype,
            device=device,
            **model_kwargs,
        )


class RLHFlowPRM(GenerativePRM):
    """A causal LM scored with the RLHFlow protocol (see the module docs)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 16,
        prefix_cache_mib: float = DEFAULT_PREFIX_CACHE_MIB,
        prm_format: GenerativeFormat | None = None,
    ) -> None:
        super().__init__(
            model,
            tokenizer,
            prm_format=prm_format or RLHFlowFormat(),
            batch_size=batch_size,
            prefix_cache_mib=prefix_cache_mib,
        )

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *,
        batch_size: int = 16,
        prefix_cache_mib: float = DEFAULT_PREFIX_CACHE_MIB,
        dtype: str | torch.dtype = "float32",
        device: str = "cpu",
        **model_kwargs: Any,
    ) -> RLHFlowPRM:
        """Load an RLHFlow PRM from a local directory or a hub id.

        Raises:
            FileNotFoundError: If ``model`` is a local path that does not exist.
            ValueError: If the tokenizer has no chat template or lacks "+" / "-" as single tokens, or
                ``prefix_cache_mib`` < 0.

        """
        return cls._load(
            model,
            RLHFlowFormat(),
            batch_size=batch_size,
            prefix_cache_mib=prefix_cache_mib,
            dtype=dtype,
            device=device,
            **model_kwargs,
        )


class QwenMathPRM(_BatchedPRM):
    """A two-class token-classification PRM with ``<extra_0>`` after each step (Qwen2.5-Math-PRM)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        prm_format: QwenMathFormat | None = None,
        batch_size: int = 8,
    ) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size)
        self.prm_format = prm_format or QwenMathFormat()
        self.prm_format.check(tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *,
        batch_size: int = 8,
        dtype: str | torch.dtype = "float32",
        device: str = "cpu",
        trust_remote_code: bool = False,
        **model_kwargs: Any,
    ) -> QwenMathPRM:
        """Load a Qwen2.5-Math-PRM-style model (``trust_remote_code=True`` for the published ones).

        Raises:
            FileNotFoundError: If ``model`` is a local path that does not exist.
            ValueError: If the tokenizer lacks ``<extra_0>`` or a chat template.

        """
        reference = resolve_model_reference(model, parameter="prm")
        tokenizer = AutoTokenizer.from_pretrained(reference, trust_remote_code=trust_remote_code)
        QwenMathFormat().check(tokenizer)
        auto = AutoModel if trust_remote_code else AutoModelForTokenClassification
        loaded = auto.from_pretrained(reference, dtype=dtype, trust_remote_code=trust_remote_code, **model_kwargs)
        loaded.to(device)
        return cls(loaded, tokenizer, batch_size=batch_size)

    def _encode(self, request: ScoreRequest) -> tuple[list[int], list[int]]:
        return self.prm_format.encode(self.tokenizer, request.problem, request.steps)

    def _read(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: list[list[int]]
    ) -> list[list[float]]:
        output = self.model(
            input_ids=input_ids.to(self.model.device), attention_mask=attention_mask.to(self.model.device)
        )
        logits = output.logits if hasattr(output, "logits") else output[0]
        probabilities = logits.float().softmax(dim=-1)[..., 1].cpu()
        return [[float(probabilities[row, p]) for p in row_positions] for row, row_positions in enumerate(positions)]


PROTOCOLS: dict[str, Any] = {"math_shepherd": MathShepherdPRM, "rlhflow": RLHFlowPRM, "qwen_math": QwenMathPRM}


def load_prm(name_or_path: str | os.PathLike[str], *, protocol: str, **kwargs: Any) -> PRMEngine:
    """Load a PRM with an explicitly chosen protocol (never guessed from the model name).

    Args:
        name_or_path: A local directory or a hub id.
        protocol: ``"math_shepherd"``, ``"rlhflow"`` or ``"qwen_math"``.
        **kwargs: Passed to the protocol class's ``from_pretrained``.

    Raises:
        ValueError: If ``protocol`` is unknown.

    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is not known; pass one of {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[protocol].from_pretrained(name_or_path, **kwargs)
