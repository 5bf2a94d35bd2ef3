"""Drives an exported memory module from real LangChain / LangGraph agents, in its own process.

    python export_agents.py MODULE_FILE STORE ADAPTER tell|ask USER THREAD TEXT

ADAPTER is ``middleware`` (langchain ``create_agent``), ``hooks`` (``create_react_agent``
pre/post model hooks), ``nodes`` (a hand-built ``StateGraph``) or ``tools``. STORE is a SQLite path, or
``langgraph-sqlite:PATH`` for LangGraph's own ``SqliteStore``. The chat model is a langchain-core fake
that records every input it gets; the script prints those inputs as JSON on its last stdout line.
Needs only the exported module's declared dependencies (no mstar).
"""

import importlib.util
import json
import sys

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from pydantic import Field


class RecordingFakeModel(FakeMessagesListChatModel):
    """A fake chat model (recorded replies, no LLM) that keeps the text of every input it was given."""

    seen: list = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append([f"{m.type}: {m.content}" for m in messages])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def bind_tools(self, tools, **kwargs):
        return self


def load(path):
    spec = importlib.util.spec_from_file_location("exported_memory", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def open_store(spec):
    if spec.startswith("langgraph-sqlite:"):
        import sqlite3

        from langgraph.store.sqlite import SqliteStore

        store = SqliteStore(sqlite3.connect(spec.split(":", 1)[1], check_same_thread=False, isolation_level=None))
        store.setup()
        return store
    return spec


def main(module_file, store_spec, adapter, mode, user, thread, text):
    mem = load(module_file)
    store = open_store(store_spec)
    model = RecordingFakeModel(responses=[AIMessage(content="Noted." if mode == "tell" else "Let me think.")])
    config = {"configurable": {"thread_id": thread, "user_id": user}}
    inp = {"messages": [{"role": "user", "content": text}]}
    if adapter == "middleware":
        from langchain.agents import create_agent

        agent = create_agent(model, tools=[], middleware=[mem.memory_middleware(store)])
        # The user comes from the run's context here (the other adapters read config["configurable"]).
        agent.invoke(inp, {"configurable": {"thread_id": thread}}, context={"user_id": user})
    elif adapter == "hooks":
        from langgraph.prebuilt import create_react_agent

        agent = create_react_agent(model, [], **mem.langgraph_hooks(store))
        agent.invoke(inp, config)
    elif adapter == "nodes":
        from langgraph.graph import END, START, StateGraph

        recall, remember = mem.memory_nodes(store)
        g = StateGraph(mem.memory_state())
        g.add_node("recall", recall)
        g.add_node("model", lambda s: {"messages": [model.invoke(mem.with_memory(s))]})
        g.add_node("remember", remember)
        g.add_edge(START, "recall")
        g.add_edge("recall", "model")
        g.add_edge("model", "remember")
        g.add_edge("remember", END)
        g.compile().invoke(inp, config)
    elif adapter == "tools":
        search, remember = mem.memory_tools(store)
        if mode == "tell":
            remember.invoke({"text": text}, config)
        else:
            model.seen.append([search.invoke({"query": text}, config)])
    else:
        raise SystemExit(f"unknown adapter {adapter}")
    print(json.dumps(model.seen))


if __name__ == "__main__":
    main(*sys.argv[1:8])
