"""A Math-Shepherd-protocol PRM on Hugging Face transformers.

In: :class:`~langchain_ttc.types.ScoreRequest` objects (a problem and its steps). Out: one score per
step. The PRM reads ``"{problem} {step 1} ки\\n{step 2} ки ..."`` (the step tag after each step) and
the score of step i is P("+") normalised over {"+", "-"} from the logits at the i-th tag, as in
Math-Shepherd (``peiyi9979/math-shepherd-mistral-7b-prm``). Requests are batched (right padded, so
causal attention makes each row's scores independent of the others).

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
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from langchain_ttc.engines.base import PRMEngine
from langchain_ttc.engines.loading import resolve_model_reference
from langchain_ttc.engines.math_shepherd_format import (
    DEFAULT_BAD_TOKEN,
    DEFAULT_GOOD_TOKEN,
    DEFAULT_STEP_TAG,
    math_shepherd_text,
)
from langchain_ttc.types import ScoreRequest, StepScores


def single_token_id(tokenizer: PreTrainedTokenizerBase, token: str, *, parameter: str) -> int:
    """The id of ``token`` if the tokenizer has it as one token, else a clear ``ValueError``."""
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1 or tokenizer.unk_token_id in ids:
        raise ValueError(
            f"{parameter}={token!r} is not a single token of the PRM tokenizer "
            f"{tokenizer.name_or_path!r} (it encodes to {ids}); pass the {parameter} the PRM was "
            "trained with, or a PRM whose tokenizer has it."
        )
    return ids[0]


class MathShepherdPRM(PRMEngine):
    """A causal LM scored with the Math-Shepherd protocol.

    Args:
        model: A causal LM trained as a Math-Shepherd PRM.
        tokenizer: Its tokenizer; must hold ``step_tag``, ``good_token`` and ``bad_token`` as single
            tokens (checked here, before any scoring).
        step_tag: The tag placed after each step.
        good_token: The token whose probability is the step score.
        bad_token: The competing token.
        batch_size: Most solutions per forward pass.

    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        step_tag: str = DEFAULT_STEP_TAG,
        good_token: str = DEFAULT_GOOD_TOKEN,
        bad_token: str = DEFAULT_BAD_TOKEN,
        batch_size: int = 16,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step_tag = step_tag
        self.batch_size = batch_size
        self._tag_id = single_token_id(tokenizer, step_tag, parameter="step_tag")
        self._candidate_ids = [
            single_token_id(tokenizer, good_token, parameter="good_token"),
            single_token_id(tokenizer, bad_token, parameter="bad_token"),
        ]
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
        self._lock = threading.Lock()

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

        The tokenizer is checked for the step tag before the weights load.

        Raises:
            FileNotFoundError: If ``model`` is a local path that does not exist.
            ValueError: If the tokenizer lacks the step tag or the good/bad tokens.

        """
        reference = resolve_model_reference(model, parameter="prm")
        tokenizer = AutoTokenizer.from_pretrained(reference)
        for token, parameter in ((step_tag, "step_tag"), (good_token, "good_token"), (bad_token, "bad_token")):
            single_token_id(tokenizer, token, parameter=parameter)
        loaded = AutoModelForCausalLM.from_pretrained(reference, dtype=dtype, **model_kwargs)
        loaded.to(device)  # type: ignore[arg-type]
        return cls(
            loaded, tokenizer, step_tag=step_tag, good_token=good_token, bad_token=bad_token, batch_size=batch_size
        )

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        encoded = [
            self.tokenizer.encode(math_shepherd_text(r.problem, r.steps, self.step_tag), add_special_tokens=True)
            if r.steps
            else []
            for r in requests
        ]
        results: list[StepScores] = [StepScores(scores=[], num_tokens=0) for _ in requests]
        todo = [i for i, ids in enumerate(encoded) if ids]
        with self._lock:
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                for i, scores in zip(chunk, self._score_rows([encoded[i] for i in chunk]), strict=True):
                    if len(scores) != len(requests[i].steps):
                        raise ValueError(
                            f"the PRM found {len(scores)} step tags for {len(requests[i].steps)} steps; the "
                            f"input is longer than the model's context or a step contains {self.step_tag!r}."
                        )
                    results[i] = StepScores(scores=scores, num_tokens=len(encoded[i]))
        return results

    @torch.no_grad()
    def _score_rows(self, rows: list[list[int]]) -> list[list[float]]:
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = 1
        logits = self.model(
            input_ids=input_ids.to(self.model.device), attention_mask=attention_mask.to(self.model.device)
        ).logits
        probabilities = logits[..., self._candidate_ids].float().softmax(dim=-1)[..., 0].cpu()
        return [
            probabilities[i, : len(row)][input_ids[i, : len(row)] == self._tag_id].tolist()
            for i, row in enumerate(rows)
        ]
