"""A hand-built LangGraph StateGraph: recall -> model -> remember, with an exported mstar memory.

    mstar export bm25 --out examples/my_memory.py
    python examples/stategraph_nodes.py [memory.db]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _model import chat_model  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from my_memory import memory_nodes, memory_state, with_memory  # noqa: E402

store = sys.argv[1] if len(sys.argv) > 1 else "memory.db"
model = chat_model()
recall, remember = memory_nodes(store)

graph = StateGraph(memory_state())
graph.add_node("recall", recall)
graph.add_node("model", lambda state: {"messages": [model.invoke(with_memory(state))]})
graph.add_node("remember", remember)
graph.add_edge(START, "recall")
graph.add_edge("recall", "model")
graph.add_edge("model", "remember")
graph.add_edge("remember", END)
app = graph.compile()

for user, thread, text in [("alice", "A", "I am allergic to peanuts and to penicillin."),
                           ("alice", "B", "Which medicine am I allergic to?"),
                           ("bob", "C", "Which medicine am I allergic to?")]:
    print(f"{user} ({thread}): {text}")
    out = app.invoke({"messages": [{"role": "user", "content": text}]},
                     {"configurable": {"thread_id": thread, "user_id": user}})
    print(f"  agent: {out['messages'][-1].content}")
