"""The chat-model facade against LangChain's standard unit tests (``langchain-tests``)."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_ttc import create_majority_vote_graph
from langchain_ttc.integrations.chat_model import TTCChatModel
from tests.fakes import ScriptedPolicy


class TestTTCChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[TTCChatModel]:
        return TTCChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"graph": create_majority_vote_graph(ScriptedPolicy(["1+1=2. \\boxed{2}"]), n=3)}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False
