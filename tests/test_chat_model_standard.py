"""The chat-model facade against LangChain's standard unit tests (``langchain-tests``).

The graph votes over turns of a scripted chat model that calls tools, so the tool-calling and
structured-output tests run on the real ``bind_tools`` path (policy and answer key checked).
"""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_ttc import create_majority_vote_graph
from langchain_ttc.core.tool_calls import TOOL_CALL_ANSWERS
from langchain_ttc.engines.chat_model_policy import ChatModelPolicy
from langchain_ttc.integrations.chat_model import TTCChatModel
from tests.fakes import ScriptedChatModel


class TestTTCChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[TTCChatModel]:
        return TTCChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        policy = ChatModelPolicy(ScriptedChatModel(replies=["1+1=2. \\boxed{2}"]))
        return {"graph": create_majority_vote_graph(policy, n=3, answer_key=TOOL_CALL_ANSWERS)}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True
