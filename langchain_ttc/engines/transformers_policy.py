"""A policy engine on Hugging Face transformers (CPU by default).

In: :class:`~langchain_ttc.core.types.GenerationRequest` objects. Out: per request, ``n`` completions with
their text, token count and finish reason. Requests that share sampling settings are batched
together (each repeated ``n`` times, left padded) into as few ``generate`` calls as the batch size
allows. Chats go through the tokenizer's chat template; a ``partial`` assistant text is continued in
place (``continue_final_message``), not answered in a new turn.

**Seeds are per request.** Completion ``k`` of a request seeded with ``s`` draws its tokens from its
own random stream, seeded ``s + k`` (vLLM's rule), while every row of a batch shares one forward
pass: a request gives the same completions alone or merged with other concurrent requests (by
:class:`~langchain_ttc.engines.batching.MicroBatchingPolicy`, say), at any batch size. Unseeded
requests draw from torch's global generator.

**Cancelled calls stop.** ``ainvoke`` runs in a stoppable worker thread
(:func:`~langchain_ttc.engines.batching.in_stoppable_thread`): when its caller is cancelled, the
running ``generate`` stops after the current token and no further batch starts.

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
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from langchain_ttc.core.types import Completion, GenerationRequest, GenerationResult
from langchain_ttc.engines.base import PolicyEngine
from langchain_ttc.engines.batching import StopSignal, check_stop, current_stop_signal, in_stoppable_thread
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


def row_generators(seed: int | None, n: int) -> list[torch.Generator | None]:
    """The random streams of a request's ``n`` completions: completion ``k`` is seeded ``seed + k`` (``None``: global).

    Example:
        >>> a, b = row_generators(7, 2)
        >>> torch.rand(1, generator=a).item() == torch.rand(1, generator=row_generators(7, 1)[0]).item()
        True
        >>> row_generators(None, 2)
        [None, None]

    """
    if seed is None:
        return [None] * n
    return [torch.Generator().manual_seed((seed + k) % (1 << 63)) for k in range(n)]


class _RowSampler(LogitsProcessor):
    """Samples each row's next token from its own generator (temperature, then nucleus ``top_p``).

    Runs under greedy decoding: it returns ``0`` for the drawn token and ``-inf`` elsewhere, so the
    argmax is the draw. A row's draw depends only on its logits and its generator, never on the
    other rows of the batch.
    """

    def __init__(self, generators: list[torch.Generator | None], temperature: float, top_p: float) -> None:
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:  # keep the smallest set of likeliest tokens whose mass reaches top_p
            ranked, order = probs.sort(dim=-1, descending=True)
            ranked = ranked.masked_fill(ranked.cumsum(dim=-1) - ranked >= self.top_p, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, order, ranked)
        cdf = probs.cumsum(dim=-1)
        draws = torch.stack([torch.rand((), generator=g) for g in self.generators]).to(cdf.device)
        tokens = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(-1), right=True)
        tokens = tokens.clamp(max=scores.shape[-1] - 1)
        return torch.full_like(scores, float("-inf")).scatter_(-1, tokens, 0.0)  # type: ignore[return-value]


class _StopOnSignal(StoppingCriteria):
    """Ends ``generate`` for every row once the engine call's stop signal is set (its caller was cancelled)."""

    def __init__(self, signal: StopSignal) -> None:
        self.signal = signal

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.signal.is_set(), dtype=torch.bool)  # type: ignore[return-value]


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
                streams = [g for i in indices for g in row_generators(requests[i].seed, requests[i].n)]
                first = requests[indices[0]]
                for start in range(0, len(rows), self.batch_size):
                    check_stop()  # a cancelled caller starts no further batch
                    chunk = slice(start, start + self.batch_size)
                    generated = self._generate_rows([prompt_ids[i] for i in rows[chunk]], first, streams[chunk])
                    check_stop()  # a batch the stop cut short is not a result
                    for i, completion in zip(rows[chunk], generated, strict=True):
                        completions[i].append(completion)
        return [
            GenerationResult(completions=c, prompt_tokens=len(ids))
            for c, ids in zip(completions, prompt_ids, strict=True)
        ]

    async def _agenerate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return await in_stoppable_thread(self._generate, requests)

    @torch.no_grad()
    def _generate_rows(
        self, rows: list[list[int]], settings: GenerationRequest, streams: list[torch.Generator | None]
    ) -> list[Completion]:
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row) :] = torch.tensor(row)
            attention_mask[i, width - len(row) :] = 1
        # Greedy decoding; at temperature > 0 each row's token is drawn by its own stream (_RowSampler).
        sampling: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if settings.temperature > 0:
            sampler = _RowSampler(streams, settings.temperature, settings.top_p)
            sampling["logits_processor"] = LogitsProcessorList([sampler])
        signal = current_stop_signal()
        if signal is not None:
            sampling["stopping_criteria"] = StoppingCriteriaList([_StopOnSignal(signal)])
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
