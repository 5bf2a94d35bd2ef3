"""The chat model the examples use: a real one through litellm when MSTAR_MODEL is set, else an offline
stand-in (langchain-core's fake model replying from a list) that shows what it was given."""

import os

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage


class ShowInputModel(FakeMessagesListChatModel):
    """Offline stand-in, not an LLM: prints the system text it receives, replies "(offline reply)"."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        for m in messages:
            if m.type == "system":
                print("  [model input, system]\n    " + str(m.content).replace("\n", "\n    "))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def bind_tools(self, tools, **kwargs):
        return self


def chat_model():
    name = os.environ.get("MSTAR_MODEL")
    if name:
        from langchain.chat_models import init_chat_model

        return init_chat_model(name)
    return ShowInputModel(responses=[AIMessage(content="(offline reply)")])
