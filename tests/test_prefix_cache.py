"""The PRM's prefix cache: the LRU store, and the real Arith PRM scoring with it as it does without."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from langchain_ttc import TTCResult, create_beam_search_graph, make_problems
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.core.types import ScoreRequest
from langchain_ttc.engines.prefix_cache import PrefixCache
from langchain_ttc.engines.transformers_prm import MathShepherdPRM

HARD = make_problems(1, 6, seed=31)[0]


def _kv(tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(1, tokens, 4), torch.zeros(1, tokens, 4))]  # 2 x 16 bytes per token


def test_lookup_takes_the_longest_cached_step_prefix_and_checks_the_tokens() -> None:
    cache = PrefixCache(budget_bytes=10_000)
    cache.put("p", ["a"], ids=[1, 2], kv=_kv(2), probabilities=torch.tensor([0.1, 0.2]))
    cache.put("p", ["a", "b"], ids=[1, 2, 3], kv=_kv(3), probabilities=torch.tensor([0.1, 0.2, 0.3]))
    hit = cache.lookup("p", ["a", "b", "c"], [1, 2, 3, 4])
    assert hit is not None and hit.length == 3 and hit.probabilities.tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert [k.shape[1] for k, _ in hit.prefix_kv()] == [3]
    # The step prefix matches but the tokens part earlier (a tokenizer that merges across the boundary).
    partial = cache.lookup("p", ["a", "x"], [1, 9, 9])
    assert partial is not None and partial.length == 1
    assert cache.lookup("p", ["x"], [1, 2]) is None  # no cached step prefix
    assert cache.lookup("other", ["a"], [1, 2]) is None  # another problem
    assert cache.lookup("p", ["a"], [5]) is None  # nothing shared


def test_least_recently_used_entries_leave_first_within_the_byte_budget() -> None:
    size = 8 * 2 + 2 * 2 * 16 + 4 * 2  # ids, keys and values, float32 probabilities of 2 tokens
    cache = PrefixCache(budget_bytes=2 * size)
    for name in ("a", "b"):
        cache.put("p", [name], ids=[1, 2], kv=_kv(2), probabilities=torch.zeros(2))
    assert cache.nbytes == 2 * size and len(cache) == 2
    assert cache.lookup("p", ["a"], [1, 2]) is not None  # "a" is now the more recent
    cache.put("p", ["c"], ids=[1, 2], kv=_kv(2), probabilities=torch.zeros(2))
    assert cache.lookup("p", ["b"], [1, 2]) is None and cache.lookup("p", ["a"], [1, 2]) is not None
    cache.put("p", ["a"], ids=[1, 2], kv=_kv(2), probabilities=torch.zeros(2))  # replaced, not counted twice
    assert cache.nbytes == 2 * size
    cache.put("p", ["huge"], ids=list(range(100)), kv=_kv(100), probabilities=torch.zeros(100))
    assert cache.lookup("p", ["huge"], list(range(100))) is None and len(cache) == 2  # larger than the budget
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_a_negative_budget_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"prefix_cache_mib=-1 must be at least 0; pass 0"):
        MathShepherdPRM.from_pretrained(arith_checkpoint("prm"), prefix_cache_mib=-1)


@pytest.fixture(scope="module")
def uncached_prm() -> MathShepherdPRM:
    return MathShepherdPRM.from_pretrained(arith_checkpoint("prm"), prefix_cache_mib=0)


def test_cached_scores_equal_full_passes_over_a_growing_search(uncached_prm: MathShepherdPRM) -> None:
    cached = MathShepherdPRM.from_pretrained(arith_checkpoint("prm"), batch_size=5)  # rows of mixed hits per batch
    rng = random.Random(0)
    problems = [p.problem for p in make_problems(3, (2, 6), seed=7)]
    beams: list[tuple[str, list[str]]] = [(rng.choice(problems), []) for _ in range(10)]
    reused = read = 0
    for _ in range(4):
        beams = [(p, [*s, f"{rng.randint(1, 9)}+{rng.randint(1, 9)}={rng.randint(0, 9)}."]) for p, s in beams]
        rng.shuffle(beams)
        beams = beams[:7] + beams[:3]  # resampled copies: the same request twice in one call
        requests = [ScoreRequest(problem=p, steps=s) for p, s in beams]
        for full, fast in zip(uncached_prm.invoke(requests), cached.invoke(requests), strict=True):
            assert fast.scores == pytest.approx(full.scores, abs=1e-5)
            assert fast.num_tokens == full.num_tokens and full.cached_tokens == 0
            assert fast.cached_tokens <= fast.num_tokens
            reused, read = reused + fast.cached_tokens, read + fast.num_tokens
    assert reused > read / 2  # each iteration's beams extend the last one's: most tokens come from the cache
    assert cached.prefix_cache is not None and 0 < cached.prefix_cache.nbytes <= cached.prefix_cache.budget_bytes


def test_a_real_beam_search_scores_the_same_and_reports_the_cached_tokens(
    arith_policy: Any, uncached_prm: MathShepherdPRM
) -> None:
    cached = MathShepherdPRM.from_pretrained(arith_checkpoint("prm"))
    options = {"n": 8, "beam_width": 2, "seed": 3, "max_tokens": 64}
    full = TTCResult.model_validate(
        create_beam_search_graph(arith_policy, uncached_prm, **options).invoke({"problem": HARD.problem})["result"]
    )
    fast = TTCResult.model_validate(
        create_beam_search_graph(arith_policy, cached, **options).invoke({"problem": HARD.problem})["result"]
    )
    assert fast.answer == full.answer and fast.chosen_index == full.chosen_index
    assert [c.text for c in fast.candidates] == [c.text for c in full.candidates]
    for a, b in zip(fast.candidates, full.candidates, strict=True):
        assert a.step_scores == pytest.approx(b.step_scores, abs=1e-5)
    assert fast.usage.prm_tokens == full.usage.prm_tokens > 0 and full.usage.prm_cached_tokens == 0
    iterations = fast.metadata["iterations"]
    assert fast.usage.prm_cached_tokens == sum(i["prm_cached_tokens"] for i in iterations) > fast.usage.prm_tokens / 3
    assert iterations[0]["prm_cached_tokens"] == 0  # the first iteration has nothing to reuse


def test_tracers_see_the_tokens_read_from_the_cache() -> None:
    from langchain_core.tracers.context import collect_runs

    prm = MathShepherdPRM.from_pretrained(arith_checkpoint("prm"))
    prm.invoke([ScoreRequest(problem=HARD.problem, steps=["1+1=2."])])
    with collect_runs() as collected:
        (again,) = prm.invoke([ScoreRequest(problem=HARD.problem, steps=["1+1=2.", "2+2=4."])])
    (run,) = collected.traced_runs
    assert 0 < again.cached_tokens < again.num_tokens
    assert run.outputs["usage_metadata"]["input_tokens"] == again.num_tokens
    assert run.outputs["usage_metadata"]["input_token_details"] == {"cache_read": again.cached_tokens}
