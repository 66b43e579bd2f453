"""A policy engine on Hugging Face transformers (CPU by default).

In: :class:`~langchain_ttc.core.types.GenerationRequest` objects. Out: per request, ``n`` completions with
their text, token count and finish reason. Requests that share sampling settings are batched
together (each repeated ``n`` times, left padded) into as few ``generate`` calls as the batch size
allows. Chats go through the tokenizer's chat template; a ``partial`` assistant text is continued in
place (``continue_final_message``), not answered in a new turn.

Example:
    >>> from langchain_ttc.arith.checkpoints import arith_checkpoint
    >>> policy = TransformersPolicy.from_pretrained(arith_checkpoint("small"))
    >>> out = policy.invoke([{"messages": [{"role": "user", "content": "Keep only the last digit"
    ...     " after each step. What is 2+3?"}], "temperature": 0, "max_tokens": 64}])
    >>> out[0].completions[0].finish_reason
    'eos'

"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult
from langchain_ttc.engines.base import PolicyEngine
from langchain_ttc.engines.chat_template import prompt_token_ids
from langchain_ttc.engines.references import resolve_model_reference


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class TransformersPolicy(PolicyEngine):
    """A causal LM from transformers as a batched policy engine.

    Args:
        model: A loaded causal LM.
        tokenizer: Its tokenizer.
        batch_size: Most sequences per ``generate`` call.

    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.provider, self.model_name = "transformers", getattr(model, "name_or_path", None) or None
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._eos_ids = _eos_ids(model, tokenizer)
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str],
        *,
        batch_size: int = 64,
        dtype: str | torch.dtype = "float32",
        device: str = "cpu",
        **model_kwargs: Any,
    ) -> TransformersPolicy:
        """Load a policy from a local directory or a hub id with the Auto classes.

        Raises:
            FileNotFoundError: If ``model`` is a local path that does not exist.

        """
        reference = resolve_model_reference(model, parameter="model")
        tokenizer = AutoTokenizer.from_pretrained(reference)
        loaded = AutoModelForCausalLM.from_pretrained(reference, dtype=dtype, **model_kwargs)
        loaded.to(device)  # type: ignore[arg-type]
        return cls(loaded, tokenizer, batch_size=batch_size)

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        prompt_ids = [prompt_token_ids(self.tokenizer, r) for r in requests]
        completions: list[list[Completion]] = [[] for _ in requests]
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for index, r in enumerate(requests):
            groups[(r.temperature, r.top_p, r.max_tokens, tuple(r.stop))].append(index)
        with self._lock:
            for indices in groups.values():
                rows = [i for i in indices for _ in range(requests[i].n)]
                first = requests[indices[0]]
                seeds = [requests[i].seed for i in indices if requests[i].seed is not None]
                if seeds:  # one generator for the batch, seeded by its requests' (distinct) seeds
                    torch.manual_seed(hash(tuple(seeds)) % (1 << 63))
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start : start + self.batch_size]
                    for i, completion in zip(
                        chunk, self._generate_rows([prompt_ids[i] for i in chunk], first), strict=True
                    ):
                        completions[i].append(completion)
        return [
            GenerationResult(completions=c, prompt_tokens=len(ids))
            for c, ids in zip(completions, prompt_ids, strict=True)
        ]

    @torch.no_grad()
    def _generate_rows(self, rows: list[list[int]], settings: GenerationRequest) -> list[Completion]:
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row) :] = torch.tensor(row)
            attention_mask[i, width - len(row) :] = 1
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
            if settings.temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        output = self.model.generate(
            input_ids=input_ids.to(self.model.device),
            attention_mask=attention_mask.to(self.model.device),
            max_new_tokens=settings.max_tokens,
            pad_token_id=self._pad_id,
            eos_token_id=sorted(self._eos_ids),
            stop_strings=settings.stop or None,
            tokenizer=self.tokenizer if settings.stop else None,
            **sampling,
        )
        return [self._to_completion(row.tolist(), settings) for row in output[:, width:]]

    def _to_completion(self, generated: list[int], settings: GenerationRequest) -> Completion:
        end = next((i for i, t in enumerate(generated) if t in self._eos_ids or t == self._pad_id), None)
        kept = generated if end is None else generated[:end]
        text = str(self.tokenizer.decode(kept, skip_special_tokens=True))
        matches = [(text.find(s), s) for s in settings.stop if s and s in text]
        if matches:
            position, stop = min(matches)
            return Completion(
                text=text[: position + len(stop)], num_tokens=len(kept), finish_reason="stop", stop_string=stop
            )
        if end is not None and generated[end] in self._eos_ids:
            return Completion(text=text, num_tokens=len(kept) + 1, finish_reason="eos")
        return Completion(text=text, num_tokens=len(kept), finish_reason="length")
