"""The host broker: every ``llm`` / ``embed`` call a harness makes (from any sandbox) is answered here.

API keys stay on the host: the sandbox only sees the answers (DESIGN §7). Each call goes through, in order:
1. a parameter allow-list (a harness must not redirect a call with ``api_base`` or pick a pricier model);
2. a SQLite response cache keyed by the sha256 of the canonical request (model, endpoint, messages,
   parameters): re-asking is free and gives the same answer, which keeps evaluations repeatable;
3. the hard USD budget: before a call, its worst-case cost is estimated from the prompt's tokens and
   ``max_tokens``; a call that could cross the budget is refused with ``BudgetExceeded``, and once the
   budget is spent every further call is refused;
4. litellm (imported lazily, with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so no price table is fetched),
   an explicit timeout and bounded retries of transient errors only;
5. the cost ledger: one row per call (purpose, model, tokens, cost, cached, ms), with per-run totals.

No model configured -> ``LLMUnavailable`` (the runner raises it inside the sandbox). Embeddings use
litellm when an embedding model is given, else the host embedder (``mstar.embedders``).
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
from typing import Any

from pydantic import BaseModel

from mstar.errors import BudgetExceeded, LLMUnavailable, MstarError

# What a harness may pass to ``toolkit.llm``; everything else (api_base, api_key, model ...) is refused.
ALLOWED_PARAMS = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed", "response_format"})
DEFAULT_MAX_TOKENS = 1024  # the completion size assumed for the budget when a call does not cap it


class LLMCallError(MstarError):
    """A model call failed for good (after retries, or an error retrying cannot fix)."""


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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache(key TEXT PRIMARY KEY, kind TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls(id INTEGER PRIMARY KEY, ts REAL NOT NULL, run TEXT NOT NULL, purpose TEXT NOT NULL,
    kind TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL, cached INTEGER NOT NULL, ms REAL NOT NULL);
"""


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


class Broker:
    def __init__(
        self,
        model: str | None = None,
        *,
        api_base: str | None = None,
        embed_model: str | None = None,
        budget_usd: float | None = None,
        cache_path: str | Path | None = None,
        run_id: str = "",
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 1.0,
        embedder: Callable[[Sequence[str]], list[list[float]]] | None = None,
        litellm_kwargs: dict[str, Any] | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
    ):
        self.model, self.api_base, self.embed_model = model, api_base, embed_model
        self.budget = budget_usd
        self.run_id = run_id
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        # Extra litellm arguments set by the host (api_key, mock_response in tests) -- never by a harness.
        self.litellm_kwargs = dict(litellm_kwargs or {})
        self.litellm_kwargs.update(local_server_key(api_base, self.litellm_kwargs))
        self.on_call = on_call
        if embedder is None:
            # The host's embedder, chosen as `mstar eval` and `mstar evolve` choose it ($MSTAR_EMBEDDER).
            from mstar.embedders import default_embedder

            embedder = default_embedder()
        self.embedder = embedder
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(cache_path) if cache_path else ":memory:", check_same_thread=False,
                                   isolation_level=None)
        self._db.executescript(_SCHEMA)
        # A resumed run continues its own ledger: what it spent before counts against the budget.
        self.spent = float(self._db.execute("SELECT COALESCE(SUM(cost),0) FROM calls WHERE run=?", (run_id,)).fetchone()[0])
        self.exhausted = budget_usd is not None and self.spent >= budget_usd

    # --- public -----------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return bool(self.model)

    def llm(self, messages: list[dict[str, Any]] | str, purpose: str = "harness", **params: Any) -> str:
        if not self.model:
            raise LLMUnavailable("this run has no model: pass --model to enable LLM calls")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        bad = sorted(set(params) - ALLOWED_PARAMS)
        if bad:
            raise ValueError(f"llm: parameter(s) {', '.join(bad)} not allowed (allowed: {', '.join(sorted(ALLOWED_PARAMS))})")
        key = self._key("llm", self.model, messages, params)
        hit = self._cache_get(key)
        if hit is not None:
            self._record("llm", purpose, self.model, 0, 0, 0.0, True, 0.0)
            return hit["text"]
        self._check_budget(self._estimate(messages, params))
        t0 = time.perf_counter()
        resp = self._with_retries(lambda lt: lt.completion(
            model=self.model, messages=messages, api_base=self.api_base, timeout=self.timeout_s,
            num_retries=0, max_retries=0, **params, **self.litellm_kwargs))
        text = resp.choices[0].message.content or ""
        usage = getattr(resp, "usage", None)
        pt, ct = int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)
        cost = self._cost(resp)
        self._cache_put(key, "llm", {"text": text})
        self._record("llm", purpose, self.model, pt, ct, cost, False, (time.perf_counter() - t0) * 1000)
        return text

    def embed(self, texts: Sequence[str], purpose: str = "harness") -> list[list[float]]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not self.embed_model:
            return self.embedder(texts)  # the host's local embedder: free, not recorded
        key = self._key("embed", self.embed_model, texts, {})
        hit = self._cache_get(key)
        if hit is not None:
            self._record("embed", purpose, self.embed_model, 0, 0, 0.0, True, 0.0)
            return hit["vectors"]
        self._check_budget(0.0)
        t0 = time.perf_counter()
        resp = self._with_retries(lambda lt: lt.embedding(
            model=self.embed_model, input=texts, api_base=self.api_base, timeout=self.timeout_s,
            **self.litellm_kwargs))
        data = sorted(resp.data, key=lambda d: d["index"] if isinstance(d, dict) else d.index)
        vectors = [list(d["embedding"] if isinstance(d, dict) else d.embedding) for d in data]
        usage = getattr(resp, "usage", None)
        cost = self._cost(resp)
        self._cache_put(key, "embed", {"vectors": vectors})
        self._record("embed", purpose, self.embed_model, int(getattr(usage, "prompt_tokens", 0) or 0), 0, cost,
                     False, (time.perf_counter() - t0) * 1000)
        return vectors

    def toolkit(self, purpose: str = "harness") -> Any:
        """The host ``Toolkit`` for harnesses: ``llm`` only when a model is configured."""
        from mstar.toolkit import Toolkit

        llm = (lambda messages, **kw: self.llm(messages, purpose=purpose, **kw)) if self.model else None
        name = self.embed_model or getattr(self.embedder, "name", "local")
        return Toolkit(llm=llm, embed=lambda texts: self.embed(texts, purpose=purpose), embedder_name=name)

    def totals(self) -> dict[str, Any]:
        """Per-run totals from the ledger."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(cached),0), COALESCE(SUM(prompt_tokens+completion_tokens),0), "
                "COALESCE(SUM(cost),0) FROM calls WHERE run=?", (self.run_id,)).fetchone()
        return {"calls": row[0], "cached": row[1], "tokens": row[2], "cost_usd": row[3],
                "budget_usd": self.budget, "exhausted": self.exhausted}

    def calls(self) -> list[CallRecord]:
        with self._lock:
            rows = self._db.execute("SELECT ts, run, purpose, kind, model, prompt_tokens, completion_tokens, cost, "
                                    "cached, ms FROM calls WHERE run=? ORDER BY id", (self.run_id,)).fetchall()
        keys = list(CallRecord.model_fields)
        return [CallRecord(**dict(zip(keys, r, strict=True))) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- internals --------------------------------------------------------------------------------
    def _key(self, kind: str, model: str, payload: Any, params: dict[str, Any]) -> str:
        canon = json.dumps({"kind": kind, "model": model, "api_base": self.api_base or "", "payload": payload,
                            "params": params}, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(canon.encode()).hexdigest()

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM cache WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _cache_put(self, key: str, kind: str, response: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO cache VALUES(?,?,?,?)", (key, kind, json.dumps(response), time.time()))

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

    def _check_budget(self, estimate: float) -> None:
        if self.budget is None:
            return
        with self._lock:
            if self.exhausted or self.spent >= self.budget:
                self.exhausted = True
                raise BudgetExceeded(f"LLM budget spent: ${self.spent:.4f} of ${self.budget:g}; no further calls")
            if self.spent + estimate > self.budget:
                raise BudgetExceeded(f"LLM budget: this call could cost ~${estimate:.4f} and ${self.spent:.4f} of "
                                     f"${self.budget:g} is spent; refused (raise --budget to allow it)")

    def _cost(self, resp: Any) -> float:
        try:
            return float(_litellm().completion_cost(completion_response=resp) or 0.0)
        except Exception:  # noqa: BLE001 - unknown price (a local server): counted as free
            return 0.0

    def _with_retries(self, fn: Callable[[Any], Any]) -> Any:
        lt = _litellm()
        transient = _transient(lt)
        for attempt in range(self.max_retries + 1):
            try:
                return fn(lt)
            except transient as e:
                if attempt == self.max_retries:
                    raise LLMCallError(f"{self.model}: {type(e).__name__} after {attempt + 1} attempts: {str(e)[:300]}") from None
                time.sleep(min(self.backoff_s * 2**attempt, 8.0))
            except Exception as e:  # noqa: BLE001 - auth, bad request, unknown model: retrying cannot help
                raise LLMCallError(f"{self.model}: {type(e).__name__}: {str(e)[:300]}") from None
        raise AssertionError("unreachable")

    def _record(self, kind: str, purpose: str, model: str, pt: int, ct: int, cost: float, cached: bool, ms: float) -> None:
        rec = CallRecord(ts=time.time(), run=self.run_id, purpose=purpose, kind=kind, model=model, prompt_tokens=pt,
                         completion_tokens=ct, cost=cost, cached=cached, ms=ms)
        with self._lock:
            self.spent += cost
            if self.budget is not None and self.spent >= self.budget:
                self.exhausted = True
            self._db.execute("INSERT INTO calls(ts, run, purpose, kind, model, prompt_tokens, completion_tokens, cost, "
                             "cached, ms) VALUES(?,?,?,?,?,?,?,?,?,?)",
                             (rec.ts, rec.run, purpose, kind, model, pt, ct, cost, int(cached), ms))
        if self.on_call is not None:
            self.on_call(rec)
