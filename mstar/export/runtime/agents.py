from mstar.export.runtime.persist import open_memory

# Stand-in for the harness's instructions.
INSTRUCTIONS = ""

# ---- EXPORT BELOW ----
# ================================== agent adapters ================================================
# LangChain / LangGraph are imported inside the functions: the module imports without them.
import threading as _mx_agent_threading  # noqa: E402
import uuid as _mx_agent_uuid  # noqa: E402


class _MxMemories:
    """One memory per user of one store, opened on first use and kept for the process."""

    def __init__(self, store, **kw):
        self.store, self.kw = store, kw
        self._open = {}
        self._written = {}
        self._lock = _mx_agent_threading.Lock()

    def get(self, user_id):
        with self._lock:
            if user_id not in self._open:
                self._open[user_id] = open_memory(self.store, user_id, **self.kw)
                self._written[user_id] = set()
            return self._open[user_id]

    def write_turns(self, user_id, messages, session):
        """Store the user's and the assistant's messages not stored yet (tool traffic is skipped)."""
        mem = self.get(user_id)
        done = self._written[user_id]
        for m in messages:
            role = _mx_role(m)
            text = _mx_text(m)
            if role not in ("user", "assistant") or not text.strip() or _mx_tool_calls(m):
                continue
            mid = _mx_get(m, "id") or _mx_agent_uuid.uuid4().hex
            if mid in done:
                continue
            mem.write({"id": str(mid), "speaker": role, "text": text, "session": session})
            done.add(mid)


def _mx_get(m, name):
    return m.get(name) if isinstance(m, dict) else getattr(m, name, None)


def _mx_role(m):
    role = _mx_get(m, "role") if isinstance(m, dict) else _mx_get(m, "type")
    return {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant"}.get(role, role)


def _mx_text(m):
    content = _mx_get(m, "content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content
                        if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text"))
    return ""


def _mx_tool_calls(m):
    return bool(_mx_get(m, "tool_calls"))


def _mx_latest_user_text(messages):
    for m in reversed(list(messages)):
        if _mx_role(m) == "user":
            return _mx_text(m)
    return ""


def _mx_config():
    try:
        from langgraph.config import get_config

        return get_config()
    except (ImportError, RuntimeError):
        return {}


def _mx_user_id(runtime=None, config=None, default=None):
    """The user whose memory to use: ``user_id`` of the run's context, else of
    ``config["configurable"]``, else ``default``."""
    if runtime is None:
        try:
            from langgraph.runtime import get_runtime

            runtime = get_runtime()
        except (ImportError, RuntimeError, KeyError):
            runtime = None
    ctx = getattr(runtime, "context", None)
    uid = ctx.get("user_id") if isinstance(ctx, dict) else getattr(ctx, "user_id", None)
    if not uid:
        uid = ((config if config is not None else _mx_config()).get("configurable") or {}).get("user_id")
    uid = uid or default
    if not uid:
        raise ValueError("memory: no user id: pass context={'user_id': ...} or "
                         "config={'configurable': {'user_id': ...}} when you invoke the agent")
    return str(uid)


def _mx_session(config=None):
    conf = (config if config is not None else _mx_config()).get("configurable") or {}
    return str(conf.get("thread_id") or "1")


def memory_block(context):
    """The text put in front of the model: the harness's INSTRUCTIONS and what memory recalled."""
    return f"{INSTRUCTIONS}\n\n<memory>\n{context}\n</memory>"


def _mx_recall(memories, messages, runtime=None, config=None, default_user_id=None):
    query = _mx_latest_user_text(messages)
    if not query.strip():
        return ""
    res = memories.get(_mx_user_id(runtime, config, default_user_id)).read(query)
    return memory_block(res["context"]) if res.get("context") else ""


def memory_middleware(store="memory.db", toolkit=None, budget=1024, default_user_id=None, namespace=("mstar",)):
    """A LangChain 1.x ``create_agent`` middleware: before each model call, memory is read for the
    latest user message and added to the system message (with INSTRUCTIONS); after the run, the
    turn's user and assistant messages are written. ``create_agent(model, middleware=[memory_middleware()])``."""
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.messages import SystemMessage

    memories = _MxMemories(store, toolkit=toolkit, budget=budget, namespace=namespace)

    class MemoryMiddleware(AgentMiddleware):
        def _with_memory(self, request):
            block = _mx_recall(memories, request.messages, request.runtime, default_user_id=default_user_id)
            if not block:
                return request
            sys_text = _mx_text(request.system_message) if request.system_message is not None else ""
            text = f"{sys_text}\n\n{block}" if sys_text else block
            return request.override(system_message=SystemMessage(content=text))

        def wrap_model_call(self, request, handler):
            return handler(self._with_memory(request))

        async def awrap_model_call(self, request, handler):
            return await handler(self._with_memory(request))

        def after_agent(self, state, runtime):
            memories.write_turns(_mx_user_id(runtime, default=default_user_id), state["messages"], _mx_session())
            return None

        async def aafter_agent(self, state, runtime):
            return self.after_agent(state, runtime)

    mw = MemoryMiddleware()
    mw.memories = memories
    return mw


def langgraph_hooks(store="memory.db", toolkit=None, budget=1024, default_user_id=None, namespace=("mstar",)):
    """``pre_model_hook`` / ``post_model_hook`` for ``langgraph.prebuilt.create_react_agent``:
    ``create_react_agent(model, tools, **langgraph_hooks("memory.db"))``. The pre hook gives the model
    the memory for the latest user message (``llm_input_messages``: the stored history is unchanged);
    the post hook writes the turn once the model answers without calling a tool."""
    from langchain_core.messages import SystemMessage

    memories = _MxMemories(store, toolkit=toolkit, budget=budget, namespace=namespace)

    def pre_model_hook(state, config):
        block = _mx_recall(memories, state["messages"], config=config, default_user_id=default_user_id)
        messages = list(state["messages"])
        return {"llm_input_messages": ([SystemMessage(content=block)] if block else []) + messages}

    def post_model_hook(state, config):
        messages = state["messages"]
        if messages and not _mx_tool_calls(messages[-1]):
            memories.write_turns(_mx_user_id(config=config, default=default_user_id), messages, _mx_session(config))
        return {}

    return {"pre_model_hook": pre_model_hook, "post_model_hook": post_model_hook}


def memory_nodes(store="memory.db", toolkit=None, budget=1024, default_user_id=None, namespace=("mstar",)):
    """Two plain node functions for a hand-built ``StateGraph`` over ``MemoryState`` (or any state
    with ``messages`` and ``memory_context``): ``recall`` sets ``memory_context`` for the latest user
    message, ``remember`` writes the turn. Build the model input with ``with_memory(state)``."""
    memories = _MxMemories(store, toolkit=toolkit, budget=budget, namespace=namespace)

    def recall(state, config):
        return {"memory_context": _mx_recall(memories, state["messages"], config=config,
                                             default_user_id=default_user_id)}

    def remember(state, config):
        memories.write_turns(_mx_user_id(config=config, default=default_user_id), state["messages"],
                             _mx_session(config))
        return {}

    return recall, remember


def memory_state():
    """The state schema for ``memory_nodes``: LangGraph's ``MessagesState`` plus ``memory_context``."""
    from langgraph.graph import MessagesState

    class MemoryState(MessagesState):
        memory_context: str

    return MemoryState


def with_memory(state):
    """The messages to send to the model: the recalled memory as a system message, then the conversation."""
    from langchain_core.messages import SystemMessage

    block = state.get("memory_context") or ""
    return ([SystemMessage(content=block)] if block else []) + list(state["messages"])


def memory_tools(store="memory.db", toolkit=None, budget=1024, default_user_id=None, namespace=("mstar",)):
    """LangChain tools over the memory's operations: ``search_memory`` (read) and ``remember`` (write),
    for agents that manage memory themselves (Mem-alpha style)."""
    from langchain_core.tools import tool

    memories = _MxMemories(store, toolkit=toolkit, budget=budget, namespace=namespace)

    @tool
    def search_memory(query: str) -> str:
        """Search the user's long-term memory; returns the recalled notes and turns."""
        res = memories.get(_mx_user_id(default=default_user_id)).read(query)
        return res.get("context") or "(nothing in memory)"

    @tool
    def remember(text: str) -> str:
        """Save one fact or note about the user to long-term memory."""
        memories.get(_mx_user_id(default=default_user_id)).write({"text": text, "speaker": "note"})
        return "saved"

    return [search_memory, remember]
