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
others) with a configurable batch size. Tokenizers are checked for the protocol's special tokens
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
from typing import Any

import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from langchain_ttc.core.types import ScoreRequest, StepScores
from langchain_ttc.engines.base import PRMEngine
from langchain_ttc.engines.batching import check_stop, in_stoppable_thread
from langchain_ttc.engines.math_shepherd_format import DEFAULT_BAD_TOKEN, DEFAULT_GOOD_TOKEN, DEFAULT_STEP_TAG
from langchain_ttc.engines.prm_formats import GenerativeFormat, MathShepherdFormat, QwenMathFormat, RLHFlowFormat
from langchain_ttc.engines.references import resolve_model_reference


def _pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


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
        raise NotImplementedError

    def _read(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: list[list[int]]
    ) -> list[list[float]]:
        raise NotImplementedError

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        encoded = [self._encode(r) if r.steps else ([], []) for r in requests]
        results = [StepScores(scores=[], num_tokens=0) for _ in requests]
        todo = [i for i, (ids, _) in enumerate(encoded) if ids]
        with self._lock, torch.no_grad():
            for start in range(0, len(todo), self.batch_size):
                check_stop()  # a cancelled caller (see in_stoppable_thread) starts no further batch
                chunk = todo[start : start + self.batch_size]
                input_ids, attention_mask = _pad_right([encoded[i][0] for i in chunk], self._pad_id)
                scores = self._read(input_ids, attention_mask, [encoded[i][1] for i in chunk])
                for i, row in zip(chunk, scores, strict=True):
                    if len(row) != len(requests[i].steps):
                        raise ValueError(
                            f"the PRM found {len(row)} step positions for {len(requests[i].steps)} steps; the input is "
                            "longer than the model's context or a step contains the protocol's special token."
                        )
                    results[i] = StepScores(scores=row, num_tokens=len(encoded[i][0]))
        return results

    async def _ascore(self, requests: list[ScoreRequest]) -> list[StepScores]:
        return await in_stoppable_thread(self._score, requests)


class GenerativePRM(_BatchedPRM):
    """A causal-LM PRM read as P(good) / (P(good) + P(bad)) at the positions its format names."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        prm_format: GenerativeFormat,
        batch_size: int = 16,
    ) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size)
        self.prm_format = prm_format
        self._candidate_ids = list(prm_format.check(tokenizer))

    def _encode(self, request: ScoreRequest) -> tuple[list[int], list[int]]:
        return self.prm_format.encode(self.tokenizer, request.problem, request.steps)

    def _read(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: list[list[int]]
    ) -> list[list[float]]:
        logits = self.model(
            input_ids=input_ids.to(self.model.device), attention_mask=attention_mask.to(self.model.device)
        ).logits
        probabilities = logits[..., self._candidate_ids].float().softmax(dim=-1)[..., 0].cpu()
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
        dtype: Any,
        device: str,
        **kwargs: Any,
    ) -> Any:
        reference = resolve_model_reference(model, parameter="prm")
        tokenizer = AutoTokenizer.from_pretrained(reference)
        prm_format.check(tokenizer)  # before the weights load
        loaded = AutoModelForCausalLM.from_pretrained(reference, dtype=dtype, **kwargs)
        loaded.to(device)  # type: ignore[arg-type]
        return cls(loaded, tokenizer, prm_format=prm_format, batch_size=batch_size)


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
        prm_format: GenerativeFormat | None = None,
    ) -> None:
        prm_format = prm_format or MathShepherdFormat(step_tag=step_tag, good_token=good_token, bad_token=bad_token)
        super().__init__(model, tokenizer, prm_format=prm_format, batch_size=batch_size)

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *,
        step_tag: str = DEFAULT_STEP_TAG,
        good_token: str = DEFAULT_GOOD_TOKEN,
        bad_token: str = DEFAULT_BAD_TOKEN,
        batch_size: int = 16,
        dtype: str | torch.dtype = "float32",
        device: str = "cpu",
        **model_kwargs: Any,
    ) -> MathShepherdPRM:
        """Load a Math-Shepherd PRM from a local directory or a hub id.

        Raises:
            FileNotFoundError: If ``model`` is a local path that does not exist.
            ValueError: If the tokenizer lacks the step tag or the good/bad tokens.

        """
        prm_format = MathShepherdFormat(step_tag=step_tag, good_token=good_token, bad_token=bad_token)
        return cls._load(model, prm_format, batch_size=batch_size, dtype=dtype, device=device, **model_kwargs)


class RLHFlowPRM(GenerativePRM):
    """A causal LM scored with the RLHFlow protocol (see the module docs)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 16,
        prm_format: GenerativeFormat | None = None,
    ) -> None:
        super().__init__(model, tokenizer, prm_format=prm_format or RLHFlowFormat(), batch_size=batch_size)

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *,
        batch_size: int = 16,
        dtype: str | torch.dtype = "float32",
        device: str = "cpu",
        **model_kwargs: Any,
    ) -> RLHFlowPRM:
        """Load an RLHFlow PRM from a local directory or a hub id.

        Raises:
            FileNotFoundError: If ``model`` is a local path that does not exist.
            ValueError: If the tokenizer has no chat template or lacks "+" / "-" as single tokens.

        """
        return cls._load(model, RLHFlowFormat(), batch_size=batch_size, dtype=dtype, device=device, **model_kwargs)


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
