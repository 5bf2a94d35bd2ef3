"""A LangChain 1.x agent (create_agent) with an exported mstar memory as middleware.

    mstar export bm25 --out examples/my_memory.py      # or a run folder: mstar export runs/<run-id> ...
    python examples/langchain_agent.py [memory.db]

Conversation A tells a fact; conversation B of the same user (a new thread: no shared history) gets it
from memory; another user does not. Set MSTAR_MODEL (a litellm/LangChain model name) to use a real model.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _model import chat_model  # noqa: E402
from langchain.agents import create_agent  # noqa: E402
from my_memory import memory_middleware  # noqa: E402

store = sys.argv[1] if len(sys.argv) > 1 else "memory.db"
agent = create_agent(chat_model(), tools=[], middleware=[memory_middleware(store)])


def say(user, thread, text):
    print(f"{user} ({thread}): {text}")
    out = agent.invoke({"messages": [{"role": "user", "content": text}]}, {"configurable": {"thread_id": thread}},
                       context={"user_id": user})
    print(f"  agent: {out['messages'][-1].content}")


say("alice", "A", "My sister Zelda moved to Reykjavik and keeps three parrots.")
say("alice", "B", "Where does my sister Zelda live now?")
say("bob", "C", "Where does my sister Zelda live now?")
