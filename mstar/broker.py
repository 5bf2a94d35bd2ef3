"""The broker: the one path every model call of mstar takes -- a harness's ``llm`` / ``embed`` (from any
sandbox, in ``mstar eval`` and in ``mstar evolve``), an operator's, the QA scorer's.

API keys stay on the host: the sandbox only sees the answers (DESIGN §7). Each call goes through, in order:
1. a parameter allow-list for harness calls (a harness must not redirect a call with ``api_base`` or
   pick a pricier model); the host's own callers (operators, scoring) are trusted;
2. a response cache keyed by the sha256 of the canonical request (model, endpoint, messages,
   parameters): re-asking is free and gives the same answer, which keeps evaluations repeatable;
3. the hard USD budget: a call is refused with ``BudgetExceeded`` unless ``spent + held + estimate <=
   budget``: the estimate is the larger of its worst case (the prompt's tokens plus ``max_tokens``, 1,024
   when uncapped, at the model's price) and the dearest call so far (the guess that holds where
   litellm has no price), ``held`` the estimates of calls in flight. A call refused next to what is
   spent leaves the broker ``exhausted``: every later call is refused and the engine stops;
4. the backend: ``LiteLLMBackend`` (litellm imported lazily, ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so no
   price table is fetched, an explicit timeout, bounded retries of transient errors only), or any
   ``(messages, **params) -> LLMReply`` callable (a scripted model in tests);
5. the cost ledger: one row per call (purpose, model, tokens, cost, cached, ms).

Where the cache and the ledger live is a ``CallStore``: ``SQLiteCallStore`` (a file of its own, what
``mstar eval`` uses) or the run's ``run.db`` (``mstar.evolve.ledger``). No model configured ->
``LLMUnavailable`` (the runner raises it inside the sandbox). Embeddings use litellm when an
embedding model is given, else the host embedder (``mstar.embedders``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from mstar.errors import BudgetExceeded, LLMUnavailable, MstarError

# What a harness may pass to ``toolkit.llm``; everything else (api_base, api_key, model ...) is refused.
ALLOWED_PARAMS = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed", "response_format"})
DEFAULT_MAX_TOKENS = 1024  # the completion size assumed for the budget when a call does not cap it


class LLMCallError(MstarError):
    """A model call failed for good (after retries, or an error retrying cannot fix)."""


class LLMReply(BaseModel):
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    model: str = ""


Backend = Callable[..., LLMReply]


class CallRecord(BaseModel):
    ts: float
    run: str
    purpose: str
    kind: str  # "llm" | "embed"
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cached: bool = False
    ms: float = 0.0


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    # litellm prints provider hints on stdout when a price is unknown (always, for a local server):
    # stdout carries `--json` summaries, so it must stay clean.
    litellm.suppress_debug_info = True
    return litellm


def local_server_key(api_base: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A placeholder key for a local OpenAI-compatible server that needs none: litellm refuses to call
    an ``openai/`` model without some key, and the user's real key must not be sent to a local URL."""
    if api_base and "api_key" not in kwargs and not os.environ.get("OPENAI_API_KEY"):
        return {"api_key": "sk-local-no-key"}
    return {}


def _transient(litellm: Any) -> tuple[type[BaseException], ...]:
    ex = litellm.exceptions
    return (ex.Timeout, ex.APIConnectionError, ex.RateLimitError, ex.InternalServerError,
            ex.ServiceUnavailableError, ex.BadGatewayError)


def with_retries(fn: Callable[[Any], Any], what: str, max_retries: int, backoff_s: float) -> Any:
    """``fn(litellm)``, retrying transient errors with exponential backoff; any failure -> ``LLMCallError``."""
    lt = _litellm()
    transient = _transient(lt)
    for attempt in range(max_retries + 1):
        try:
            return fn(lt)
        except transient as e:
            if attempt == max_retries:
                raise LLMCallError(f"{what}: {type(e).__name__} after {attempt + 1} attempts: {str(e)[:300]}") from None
            time.sleep(min(backoff_s * 2**attempt, 8.0))
        except Exception as e:  # noqa: BLE001 - auth, bad request, unknown model: retrying cannot help
            raise LLMCallError(f"{what}: {type(e).__name__}: {str(e)[:300]}") from None
    raise AssertionError("unreachable")


def response_cost(resp: Any) -> float:
    try:
        return float(_litellm().completion_cost(completion_response=resp) or 0.0)
    except Exception:  # noqa: BLE001 - unknown price (a local server): counted as free
        return 0.0


class LiteLLMBackend:
    """A chat model through litellm: any litellm model string, ``api_base`` for a local server."""

    def __init__(self, model: str, api_base: str | None = None, timeout_s: float = 60.0, max_retries: int = 2,
                 backoff_s: float = 1.0, litellm_kwargs: dict[str, Any] | None = None):
        self.model, self.api_base = model, api_base
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        # Extra litellm arguments set by the host (api_key, mock_response in tests) -- never by a harness.
        self.litellm_kwargs = dict(litellm_kwargs or {})
        self.litellm_kwargs.update(local_server_key(api_base, self.litellm_kwargs))

    def __call__(self, messages: list[dict[str, Any]], **params: Any) -> LLMReply:
        resp = with_retries(lambda lt: lt.completion(
            model=self.model, messages=messages, api_base=self.api_base, timeout=self.timeout_s,
            num_retries=0, max_retries=0, **{**self.litellm_kwargs, **params}), self.model, self.max_retries,
            self.backoff_s)
        usage = getattr(resp, "usage", None)
        return LLMReply(text=resp.choices[0].message.content or "", model=self.model, cost=response_cost(resp),
                        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0))


class CallStore(Protocol):
    """Where a broker keeps its response cache and its ledger."""

    def cache_get(self, key: str) -> dict[str, Any] | None: ...
    def cache_put(self, key: str, kind: str, response: dict[str, Any]) -> None: ...
    def record(self, rec: CallRecord) -> None: ...
    def spent(self, run: str) -> tuple[int, float]: ...  # (tokens, USD) recorded so far for the run
    def calls(self, run: str) -> list[CallRecord]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache(key TEXT PRIMARY KEY, kind TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls(id INTEGER PRIMARY KEY, ts REAL NOT NULL, run TEXT NOT NULL, purpose TEXT NOT NULL,
    kind TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL, cached INTEGER NOT NULL, ms REAL NOT NULL);
"""


class SQLiteCallStore:
    """A cache and a ledger in one SQLite file (``:memory:`` without a path), shared by runs."""

    def __init__(self, path: str | Path | None = None):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM cache WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def cache_put(self, key: str, kind: str, response: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO cache VALUES(?,?,?,?)", (key, kind, json.dumps(response), time.time()))

    def record(self, rec: CallRecord) -> None:
        with self._lock:
            self._db.execute("INSERT INTO calls(ts, run, purpose, kind, model, prompt_tokens, completion_tokens, cost, "
                             "cached, ms) VALUES(?,?,?,?,?,?,?,?,?,?)",
                             (rec.ts, rec.run, rec.purpose, rec.kind, rec.model, rec.prompt_tokens,
                              rec.completion_tokens, rec.cost, int(rec.cached), rec.ms))

    def spent(self, run: str) -> tuple[int, float]:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(prompt_tokens+completion_tokens),0), COALESCE(SUM(cost),0) "
                                   "FROM calls WHERE run=?", (run,)).fetchone()
        return int(row[0]), float(row[1])

    def calls(self, run: str) -> list[CallRecord]:
        with self._lock:
            rows = self._db.execute("SELECT ts, run, purpose, kind, model, prompt_tokens, completion_tokens, cost, "
                                    "cached, ms FROM calls WHERE run=? ORDER BY id", (run,)).fetchall()
        keys = list(CallRecord.model_fields)
        return [CallRecord(**dict(zip(keys, r, strict=True))) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Broker:
    def __init__(
        self,
        model: str | None = None,
        *,
        api_base: str | None = None,
        embed_model: str | None = None,
        budget_usd: float | None = None,
        cache_path: str | Path | None = None,
        store: CallStore | None = None,
        backend: Backend | None = None,
        run_id: str = "",
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 1.0,
        embedder: Callable[[Sequence[str]], list[list[float]]] | None = None,
        litellm_kwargs: dict[str, Any] | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
    ):
        self.model, self.api_base, self.embed_model = model or "", api_base, embed_model
        self.budget = budget_usd
        self.run_id = run_id
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.litellm_kwargs = dict(litellm_kwargs or {})
        self.litellm_kwargs.update(local_server_key(api_base, self.litellm_kwargs))
        if backend is None and model:
            backend = LiteLLMBackend(model, api_base, timeout_s, max_retries, backoff_s, self.litellm_kwargs)
        self.backend = backend
        self.on_call = on_call
        self._embedder = embedder
        self._lock = threading.RLock()
        self.calls_store: CallStore = store if store is not None else SQLiteCallStore(cache_path)
        # A resumed run continues its own ledger: what it spent before counts against the budget.
        self.tokens, self.spent = self.calls_store.spent(run_id)
        self.max_call = 0.0
        self._reserved = 0.0
        self.exhausted = budget_usd is not None and self.spent >= budget_usd

    # --- public -----------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.backend is not None

    @property
    def embedder(self) -> Callable[[Sequence[str]], list[list[float]]]:
        if self._embedder is None:
            # The host's embedder, chosen as `mstar eval` and `mstar evolve` choose it ($MSTAR_EMBEDDER).
            from mstar.embedders import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def llm(self, messages: list[dict[str, Any]] | str, purpose: str = "harness", **params: Any) -> str:
        if self.backend is None:
            raise LLMUnavailable("this run has no model: pass --model to enable LLM calls")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if purpose == "harness":
            bad = sorted(set(params) - ALLOWED_PARAMS)
            if bad:
                raise ValueError(f"llm: parameter(s) {', '.join(bad)} not allowed "
                                 f"(allowed: {', '.join(sorted(ALLOWED_PARAMS))})")
        # Sampling calls are cached by their exact arguments too: a resumed run asking the same thing
        # gets the same answer, which keeps it exact.
        key = self._key("llm", self.model, messages, params)
        hit = self.calls_store.cache_get(key)
        if hit is not None:
            self._record("llm", purpose, self.model, 0, 0, 0.0, True, 0.0)
            return hit["text"]
        reserved = self._reserve(lambda: self._estimate(messages, params))
        try:
            t0 = time.perf_counter()
            reply = self.backend(messages, **params)
            self.calls_store.cache_put(key, "llm", {"text": reply.text})
            self._record("llm", purpose, reply.model or self.model, reply.prompt_tokens, reply.completion_tokens,
                         reply.cost, False, (time.perf_counter() - t0) * 1000)
        finally:
            self._release(reserved)
        return reply.text

    def call(self, purpose: str, messages: list[dict[str, Any]] | str, **params: Any) -> str:
        return self.llm(messages, purpose=purpose, **params)

    def fn(self, purpose: str) -> Callable[..., str]:
        """A plain ``llm(messages, **kw) -> str`` for one purpose (``operator:llm_reflect``, ``harness``)."""
        return lambda messages, **kw: self.llm(messages, purpose=purpose, **kw)

    def embed(self, texts: Sequence[str], purpose: str = "harness") -> list[list[float]]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not self.embed_model:
            return self.embedder(texts)  # the host's local embedder: free, not recorded
        key = self._key("embed", self.embed_model, texts, {})
        hit = self.calls_store.cache_get(key)
        if hit is not None:
            self._record("embed", purpose, self.embed_model, 0, 0, 0.0, True, 0.0)
            return hit["vectors"]
        reserved = self._reserve(lambda: 0.0)
        try:
            t0 = time.perf_counter()
            resp = with_retries(lambda lt: lt.embedding(
                model=self.embed_model, input=texts, api_base=self.api_base, timeout=self.timeout_s,
                **self.litellm_kwargs), self.embed_model, self.max_retries, self.backoff_s)
            data = sorted(resp.data, key=lambda d: d["index"] if isinstance(d, dict) else d.index)
            vectors = [list(d["embedding"] if isinstance(d, dict) else d.embedding) for d in data]
            usage = getattr(resp, "usage", None)
            self.calls_store.cache_put(key, "embed", {"vectors": vectors})
            self._record("embed", purpose, self.embed_model, int(getattr(usage, "prompt_tokens", 0) or 0), 0,
                         response_cost(resp), False, (time.perf_counter() - t0) * 1000)
        finally:
            self._release(reserved)
        return vectors

    def toolkit(self, purpose: str = "harness") -> Any:
        """The host ``Toolkit`` for harnesses: ``llm`` only when a model is configured."""
        from mstar.toolkit import Toolkit

        llm = self.fn(purpose) if self.available else None
        name = self.embed_model or getattr(self.embedder, "name", "local")
        return Toolkit(llm=llm, embed=lambda texts: self.embed(texts, purpose=purpose), embedder_name=name)

    def totals(self) -> dict[str, Any]:
        """Per-run totals from the ledger."""
        recs = self.calls()
        return {"calls": len(recs), "cached": sum(r.cached for r in recs),
                "tokens": sum(r.prompt_tokens + r.completion_tokens for r in recs),
                "cost_usd": sum(r.cost for r in recs), "budget_usd": self.budget, "exhausted": self.exhausted}

    def calls(self) -> list[CallRecord]:
        return self.calls_store.calls(self.run_id)

    def close(self) -> None:
        close = getattr(self.calls_store, "close", None)
        if close is not None:
            close()

    # --- internals --------------------------------------------------------------------------------
    def _key(self, kind: str, model: str, payload: Any, params: dict[str, Any]) -> str:
        canon = json.dumps({"kind": kind, "model": model, "api_base": self.api_base or "", "payload": payload,
                            "params": params}, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(canon.encode()).hexdigest()

    def _estimate(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> float:
        """Worst-case USD of one call: the prompt's tokens plus ``max_tokens`` of completion."""
        lt = _litellm()
        try:
            prompt = int(lt.token_counter(model=self.model, messages=messages))
        except Exception:  # noqa: BLE001 - no tokenizer for this model: ~4 characters a token
            prompt = len(json.dumps(messages)) // 4 + 1
        completion = int(params.get("max_tokens") or DEFAULT_MAX_TOKENS)
        try:
            p, c = lt.cost_per_token(model=self.model, prompt_tokens=prompt, completion_tokens=completion)
            return float(p) + float(c)
        except Exception:  # noqa: BLE001 - a model litellm has no price for (a local server): free
            return 0.0

    def _reserve(self, worst_case: Callable[[], float]) -> float:
        """Refuse a call that could cross the budget, else hold its estimate until it is recorded, so
        concurrent calls (threads, the Ray broker actor) cannot cross it together either.

        A call that does not fit next to what is spent ends the budget (``exhausted``: every later call
        is refused, the engine stops); one that does not fit only next to calls in flight is refused alone."""
        if self.budget is None:
            return 0.0
        with self._lock:
            if self.exhausted or self.spent >= self.budget:
                self.exhausted = True
                raise BudgetExceeded(f"LLM budget spent: ${self.spent:.4f} of ${self.budget:g}; no further calls")
            estimate = max(worst_case(), self.max_call)
            if self.spent + estimate > self.budget:
                self.exhausted = True
                raise BudgetExceeded(f"LLM budget: this call could cost ~${estimate:.4f} and ${self.spent:.4f} of "
                                     f"${self.budget:g} is spent; refused, no further calls (raise the budget to "
                                     "allow it, or cap max_tokens)")
            if self.spent + self._reserved + estimate > self.budget:
                raise BudgetExceeded(f"LLM budget: this call could cost ~${estimate:.4f} and ${self._reserved:.4f} "
                                     f"is held by calls in flight next to ${self.spent:.4f} spent of ${self.budget:g}")
            self._reserved += estimate
            return estimate

    def _release(self, reserved: float) -> None:
        with self._lock:
            self._reserved -= reserved

    def _record(self, kind: str, purpose: str, model: str, pt: int, ct: int, cost: float, cached: bool, ms: float) -> None:
        rec = CallRecord(ts=time.time(), run=self.run_id, purpose=purpose, kind=kind, model=model, prompt_tokens=pt,
                         completion_tokens=ct, cost=cost, cached=cached, ms=ms)
        with self._lock:
            self.spent += cost
            self.tokens += pt + ct
            self.max_call = max(self.max_call, cost)
            if self.budget is not None and self.spent >= self.budget:
                self.exhausted = True
        self.calls_store.record(rec)
        if self.on_call is not None:
            self.on_call(rec)
