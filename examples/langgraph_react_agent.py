"""langgraph.prebuilt.create_react_agent with an exported mstar memory as pre / post model hooks.

    mstar export bm25 --out examples/my_memory.py
    python examples/langgraph_react_agent.py [memory.db]

The user comes from config["configurable"]["user_id"].
"""

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _model import chat_model  # noqa: E402
from langgraph.prebuilt import create_react_agent  # noqa: E402
from my_memory import langgraph_hooks  # noqa: E402

warnings.filterwarnings("ignore", message=".*create_react_agent has been moved.*")
store = sys.argv[1] if len(sys.argv) > 1 else "memory.db"
agent = create_react_agent(chat_model(), [], **langgraph_hooks(store))

for user, thread, text in [("alice", "A", "My locker code at the gym is 4417."),
                           ("alice", "B", "What is my gym locker code?"),
                           ("bob", "C", "What is my gym locker code?")]:
    print(f"{user} ({thread}): {text}")
    out = agent.invoke({"messages": [{"role": "user", "content": text}]},
                       {"configurable": {"thread_id": thread, "user_id": user}})
    print(f"  agent: {out['messages'][-1].content}")
