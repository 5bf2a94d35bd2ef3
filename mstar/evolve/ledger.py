"""The run's LLM ledger: every model call (operators' and harnesses') goes through it, is cached,
recorded in ``llm_calls`` with its tokens and cost, and refused once the hard USD budget would be crossed.

The budget is never crossed: a call is refused unless ``spent + estimate <= budget``, where the
estimate is the largest cost a single call of this run has had so far (a conservative guess of the
next one). A refused call raises ``BudgetExceeded`` and marks the ledger ``exhausted``; the engine
then stops. The host broker (sandbox issue) will do the same per call; the ledger stays the record.

The backend is any callable ``(messages, **kw) -> LLMReply``: ``LiteLLMBackend`` for real models (any
litellm model string, ``api_base`` for a local OpenAI-compatible server), a scripted function in tests.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from mstar.errors import BudgetExceeded


class LLMReply(BaseModel):
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    model: str = ""


Backend = Callable[..., LLMReply]


class LiteLLMBackend:
    def __init__(self, model: str, api_base: str | None = None, timeout: float = 120.0):
        self.model = model
        self.api_base = api_base
        self.timeout = timeout

    def __call__(self, messages: list[dict[str, Any]], **kw: Any) -> LLMReply:
        # The price table shipped with litellm: no fetch at import (offline machines wait seconds for
        # it to fail), and costs that do not change under a run's feet.
        from mstar.broker import _litellm, local_server_key

        litellm = _litellm()
        resp = litellm.completion(model=self.model, messages=messages, api_base=self.api_base,
                                  timeout=self.timeout, num_retries=2, **local_server_key(self.api_base, kw), **kw)
        usage = getattr(resp, "usage", None)
        try:
            cost = float(litellm.completion_cost(completion_response=resp) or 0.0)
        except Exception:  # unknown price (local server): counted as free, tokens still recorded
            cost = 0.0
        return LLMReply(text=resp.choices[0].message.content or "", model=self.model, cost=cost,
                        prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                        completion_tokens=getattr(usage, "completion_tokens", 0) or 0)


class Ledger:
    def __init__(self, store: Any, backend: Backend | None, model: str = "", budget_usd: float | None = None):
        self.store = store
        self.backend = backend
        self.model = model
        self.budget = budget_usd
        self.tokens, self.spent = store.llm_totals() if store is not None else (0, 0.0)
        self.max_call = 0.0
        self.exhausted = False
        self._lock = threading.Lock()  # executors may call from worker threads

    @property
    def available(self) -> bool:
        return self.backend is not None

    def _key(self, messages: Any, kw: dict[str, Any]) -> str:
        blob = json.dumps({"m": self.model, "msgs": messages, "kw": kw}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def call(self, purpose: str, messages: list[dict[str, Any]] | str, **kw: Any) -> str:
        if self.backend is None:
            from mstar.errors import LLMUnavailable

            raise LLMUnavailable("this run has no model: pass --model to enable LLM calls")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        # Sampling calls (temperature > 0 with a seed of their own) are still cached by their exact
        # arguments: a resumed run asking the same thing gets the same answer, which keeps it exact.
        key = self._key(messages, kw)
        cached = self.store.cache_get(key) if self.store is not None else None
        if cached is not None:
            if self.store is not None:
                self.store.add_llm_call(purpose, self.model, 0, 0, 0.0, True)
            return cached["text"]
        with self._lock:
            if self.budget is not None and self.spent + self.max_call > self.budget:
                self.exhausted = True
                raise BudgetExceeded(f"LLM budget: ${self.spent:.4f} spent of ${self.budget:g}; the next call could cross it")
        reply = self.backend(messages, **kw)
        with self._lock:
            self.spent += reply.cost
            self.tokens += reply.prompt_tokens + reply.completion_tokens
            self.max_call = max(self.max_call, reply.cost)
        if self.store is not None:
            self.store.add_llm_call(purpose, reply.model or self.model, reply.prompt_tokens, reply.completion_tokens,
                                    reply.cost, False)
            self.store.cache_put(key, {"text": reply.text})
        return reply.text

    def fn(self, purpose: str) -> Callable[..., str]:
        """A plain ``llm(messages, **kw) -> str`` for one purpose (``operator:llm_reflect``, ``harness``)."""
        return lambda messages, **kw: self.call(purpose, messages, **kw)
