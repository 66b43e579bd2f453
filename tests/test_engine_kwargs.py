"""Engine calls refuse keyword arguments they would drop (a ``TypeError`` with the fix), and keep
LangChain's Runnable contract: ``config``, ``batch``, ``stream``, ``with_config`` and their async forms."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from tests.fakes import ScriptedPolicy, ScriptedPRM

REQUEST = {"prompt": "2+3=", "n": 2}
SCORE = {"problem": "2+3?", "steps": ["2+3=5"]}


def test_a_policy_call_with_a_sampling_option_names_it_and_where_it_goes() -> None:
    policy = ScriptedPolicy(["5"])
    says = r"ScriptedPolicy\.invoke\(\) got an unexpected keyword argument 'temperature': "
    with pytest.raises(
        TypeError, match=says + r".*set temperature on each request instead \(a GenerationRequest field\)"
    ):
        policy.invoke([REQUEST], temperature=0.2)
    with pytest.raises(TypeError, match=r"ScriptedPolicy\.ainvoke\(\) got unexpected keyword arguments 'max_tokens', "
                                         r"'temperature'"):  # fmt: skip
        asyncio.run(policy.ainvoke([REQUEST], temperature=0.2, max_tokens=8))
    with pytest.raises(TypeError, match=r"'callbacks'.*run options \(callbacks, tags, metadata\) go in config="):
        policy.invoke([REQUEST], callbacks=[])
    with pytest.raises(TypeError, match="'temperature'"):
        policy.bind(temperature=0.2).invoke([REQUEST])
    assert policy.calls == []  # nothing ran


def test_a_prm_call_with_an_unknown_keyword_names_it() -> None:
    prm = ScriptedPRM(lambda problem, step: 1.0)
    with pytest.raises(TypeError, match=r"ScriptedPRM\.invoke\(\) got an unexpected keyword argument 'aggregation': "
                                         r".*a request holds problem, steps"):  # fmt: skip
        prm.invoke([SCORE], aggregation="min")
    with pytest.raises(TypeError, match=r"ScriptedPRM\.ainvoke\(\)"):
        asyncio.run(prm.ainvoke([SCORE], aggregation="min"))
    assert prm.calls == []


class Names(BaseCallbackHandler):
    def __init__(self) -> None:
        self.runs: list[tuple[str, list[str]]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.runs.append((kwargs.get("name") or "", kwargs.get("tags") or []))


def test_the_runnable_contract_still_holds() -> None:
    policy, prm = ScriptedPolicy(["5"]), ScriptedPRM(lambda problem, step: 0.5)
    names = Names()
    (result,) = policy.invoke([REQUEST], {"callbacks": [names], "tags": ["mine"]})
    assert [c.text for c in result.completions] == ["5", "5"]
    assert names.runs == [("ttc:policy", ["mine", "ttc:policy"])]
    assert [len(r) for r in policy.batch([[REQUEST], [REQUEST, REQUEST]], {"max_concurrency": 1})] == [1, 2]
    assert [r[0].completions[0].text for r in policy.stream([REQUEST])] == ["5"]
    assert policy.with_config(tags=["t"]).invoke([REQUEST])[0].completions[0].text == "5"
    assert asyncio.run(prm.ainvoke([SCORE], {"tags": ["mine"]}))[0].scores == [0.5]
    assert [r[0].scores for r in asyncio.run(prm.abatch([[SCORE], [SCORE]]))] == [[0.5], [0.5]]
