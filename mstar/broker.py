"""The broker: the one path every model call of mstar takes -- a harness's ``llm`` / ``embed`` (from any
sandbox, in ``mstar eval`` and in ``mstar evolve``), an operator's, the QA scorer's.

API keys stay on the host: the sandbox only sees the answers (docs/ARCHITECTURE.md#broker). Each call goes through, in order:
1. a parameter allow-list and a prompt-size cap for harness calls (a harness must not redirect a call
   with ``api_base`` or pick a pricier model); then, for every call, the completion cap of its purpose
   (``mstar.llm_limits``: harness, operator, answer, judge): ``max_tokens`` is set to at most the cap,
   whatever was asked, and ``n`` > 1 is refused;
2. a response cache keyed by the sha256 of the canonical request (model, endpoint, messages,
   parameters): re-asking is free and gives the same answer, which keeps evaluations repeatable;
3. the hard budgets, USD and tokens: a call is refused with ``BudgetExceeded`` unless ``spent + held +
   estimate <= budget`` for each: the estimate is its worst case (the prompt's tokens plus the capped
   ``max_tokens``; in USD the larger of that at the model's price and the dearest call so far, the
   guess that holds where litellm has no price), ``held`` the estimates of calls in flight. A call
   refused next to what is spent leaves the broker ``exhausted``: every later call is refused and the
   engine stops. A harness call that would take its candidate past ``candidate_share`` of a budget
   fails that candidate (``CandidateFailure("llm_budget")``), not the run;
4. the backend: ``LiteLLMBackend`` (litellm imported lazily, ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so no
   price table is fetched, an explicit timeout, bounded retries of transient errors only), or any
   ``(messages, **params) -> LLMReply`` callable (a scripted model in tests);
5. the cost ledger: one row per call (run, purpose, program, model, tokens, cost, cached, ms).

A call that fails for good raises ``LLMError`` (``LLMCallError``): a harness may catch it as
``toolkit.LLMError``; the answer step scores the probe 0 with the reason; an operator's proposal fails.

Where the cache and the ledger live is a ``CallStore``: ``SQLiteCallStore`` (a file of its own, what
``mstar eval`` uses) or the run's ``run.db`` (``mstar.evolve.store.ledger``). No model configured ->
``LLMUnavailable`` (the runner raises it inside the sandbox). Embeddings use litellm when an
embedding model is given, else the host embedder (``mstar.embedders``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mstar.callstore import CallRecord, CallStore, SQLiteCallStore
from mstar.errors import BudgetExceeded, CandidateFailure, LLMError, LLMUnavailable, ModelUnreachable
from mstar.llm_limits import LLMLimits, purpose_kind

# What a harness may pass to ``toolkit.llm``; everything else (api_base, api_key, model, n ...) is refused.
ALLOWED_PARAMS = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed", "response_format"})
# Parameters that multiply what a call costs: a trusted caller may not pass them either.
_COSTLY = ("n", "best_of", "max_completion_tokens")
DOWN_AFTER, DOWN_FOR_S = 3, 30.0  # calls failed in a row -> the model counts as down for this long


class LLMCallError(LLMError):
    """A model call failed for good (after retries, or an error retrying cannot fix)."""


class LLMReply(BaseModel):
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    model: str = ""


Backend = Callable[..., LLMReply]


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
            if isinstance(e, lt.exceptions.Timeout):
                # Not retried: a local server keeps generating after the client gives up, and a retry
                # would queue a second generation behind the first.
                raise LLMCallError(f"{what}: timed out (not retried): {str(e)[:300]}") from None
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

    def __init__(self, model: str, api_base: str | None = None, timeout_s: float = 120.0, max_retries: int = 2,
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


class Broker:
    def __init__(
        self,
        model: str | None = None,
        *,
        api_base: str | None = None,
        embed_model: str | None = None,
        budget_usd: float | None = None,
        budget_tokens: int | None = None,
        limits: LLMLimits | None = None,
        cache_path: str | Path | None = None,
        store: CallStore | None = None,
        backend: Backend | None = None,
        run_id: str = "",
        timeout_s: float | None = None,
        max_retries: int = 2,
        backoff_s: float = 1.0,
        embedder: Callable[[Sequence[str]], list[list[float]]] | None = None,
        litellm_kwargs: dict[str, Any] | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
        down_halts: bool = False,
    ):
        self.model, self.api_base, self.embed_model = model or "", api_base, embed_model
        self.budget = budget_usd
        self.budget_tokens = budget_tokens
        self.limits = limits or LLMLimits()
        self.run_id = run_id
        self.timeout_s = self.limits.timeout_s if timeout_s is None else timeout_s
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.litellm_kwargs = dict(litellm_kwargs or {})
        self.litellm_kwargs.update(local_server_key(api_base, self.litellm_kwargs))
        if backend is None and model:
            backend = LiteLLMBackend(model, api_base, self.timeout_s, max_retries, backoff_s, self.litellm_kwargs)
        self.backend = backend
        self.on_call = on_call
        self._embedder = embedder
        self._lock = threading.RLock()
        self.calls_store: CallStore = store if store is not None else SQLiteCallStore(cache_path)
        # A resumed run continues its own ledger: what it spent before counts against the budget.
        self.tokens, self.spent = self.calls_store.spent(run_id)
        self.max_call = 0.0
        self._reserved = 0.0
        self._reserved_tokens = 0
        self._failures, self._down_until, self._last_error = 0, 0.0, ""
        # A model that stopped answering: per call (False, `mstar eval`: each probe fails with the reason)
        # or for the run (True, `mstar evolve`: ModelUnreachable halts it resumable, nothing misscored).
        self.down_halts = down_halts
        self.halted: str | None = None
        # Per candidate (program id): [tokens, USD] spent and held by its harness calls.
        self._cand: dict[str, list[float]] = {}
        self.exhausted = (budget_usd is not None and self.spent >= budget_usd) or (
            budget_tokens is not None and self.tokens >= budget_tokens)

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
        return self.ask(messages, purpose, params)

    def ask(self, messages: list[dict[str, Any]] | str, purpose: str, params: dict[str, Any],
            candidate: str = "") -> str:
        """One model call for ``purpose`` (made for ``candidate``, a program id, when a harness made it).

        ``params`` is a dict, not keywords, so nothing a harness passes can set the purpose or the
        candidate. The completion is capped (``LLMLimits.max_tokens``); a failed call raises ``LLMError``."""
        if self.backend is None:
            raise LLMUnavailable("this run has no model: pass --model to enable LLM calls")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        params = self._capped(messages, purpose, dict(params))
        # Sampling calls are cached by their exact arguments too: a resumed run asking the same thing
        # gets the same answer, which keeps it exact.
        key = self._key("llm", self.model, messages, params)
        hit = self.calls_store.cache_get(key)
        if hit is not None:
            self._record("llm", purpose, self.model, 0, 0, 0.0, True, 0.0, candidate)
            return hit["text"]
        self._check_up()
        held = self._reserve(messages, params, purpose, candidate)
        try:
            t0 = time.perf_counter()
            try:
                reply = self.backend(messages, **params)
            except LLMError as e:
                self._last_error = str(e)[:200]
                self._note_failure()
                # Recorded too: the call happened and took time; what a server spent on a request the
                # client gave up on is not known here (tokens 0), and the row says so.
                self._record("llm", purpose, self.model, 0, 0, 0.0, False, (time.perf_counter() - t0) * 1000,
                             candidate, error=str(e)[:300])
                raise
            self._failures = 0
            self.calls_store.cache_put(key, "llm", {"text": reply.text})
            self._record("llm", purpose, reply.model or self.model, reply.prompt_tokens, reply.completion_tokens,
                         reply.cost, False, (time.perf_counter() - t0) * 1000, candidate)
        finally:
            self._release(held, candidate)
        return reply.text

    def call(self, purpose: str, messages: list[dict[str, Any]] | str, **params: Any) -> str:
        return self.ask(messages, purpose, params)

    def fn(self, purpose: str, candidate: str = "") -> Callable[..., str]:
        """A plain ``llm(messages, **kw) -> str`` for one purpose (``operator:llm_reflect``, ``harness``)."""
        return lambda messages, **kw: self.ask(messages, purpose, kw, candidate)

    def route(self, purpose: str, candidate: str = "") -> Callable[..., str]:
        return self.fn(purpose, candidate)

    def embed(self, texts: Sequence[str], purpose: str = "harness") -> list[list[float]]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not self.embed_model:
            return self.embedder(texts)  # the host's local embedder: free, not recorded
        key = self._key("embed", self.embed_model, texts, {})
        hit = self.calls_store.cache_get(key)
        if hit is not None:
            self._record("embed", purpose, self.embed_model, 0, 0, 0.0, True, 0.0)
            return hit["vectors"]
        held = self._reserve(None, {}, purpose, "")
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
            self._release(held, "")
        return vectors

    def toolkit(self, purpose: str = "harness") -> Any:
        """The host ``Toolkit`` for harnesses: ``llm`` only when a model is configured; the answer step
        and the judges reach the broker under their own purposes through ``Toolkit.scorer``."""
        from mstar.toolkit import Toolkit

        llm = self.fn(purpose) if self.available else None
        name = self.embed_model or getattr(self.embedder, "name", "local")
        return Toolkit(llm=llm, embed=lambda texts: self.embed(texts, purpose=purpose), embedder_name=name,
                       route=self.route if self.available else None, limits=self.limits)

    def totals(self) -> dict[str, Any]:
        """Per-run totals from the ledger."""
        recs = self.calls()
        return {"calls": len(recs), "cached": sum(r.cached for r in recs),
                "tokens": sum(r.prompt_tokens + r.completion_tokens for r in recs),
                "cost_usd": sum(r.cost for r in recs), "budget_usd": self.budget,
                "budget_tokens": self.budget_tokens, "exhausted": self.exhausted}

    def calls(self) -> list[CallRecord]:
        return self.calls_store.calls(self.run_id)

    def close(self) -> None:
        close = getattr(self.calls_store, "close", None)
        if close is not None:
            close()

    # --- internals --------------------------------------------------------------------------------
    def _capped(self, messages: list[dict[str, Any]], purpose: str, params: dict[str, Any]) -> dict[str, Any]:
        """The call's parameters with the purpose's completion cap applied (lowered, never refused)."""
        if purpose_kind(purpose) == "harness":
            bad = sorted(set(params) - ALLOWED_PARAMS)
            if bad:
                raise ValueError(f"llm: parameter(s) {', '.join(bad)} not allowed "
                                 f"(allowed: {', '.join(sorted(ALLOWED_PARAMS))})")
            chars = len(json.dumps(messages, ensure_ascii=False, default=str))
            if chars > self.limits.harness_prompt_chars:
                raise ValueError(f"llm: the prompt has {chars:,} characters, over the run's cap of "
                                 f"{self.limits.harness_prompt_chars:,} for a harness call")
        for k in _COSTLY:
            v = params.pop(k, None)
            if k == "max_completion_tokens" and v is not None and "max_tokens" not in params:
                params["max_tokens"] = v
            elif k in ("n", "best_of") and v not in (None, 1):
                raise ValueError(f"llm: {k}={v!r} is not allowed (one completion per call)")
        cap = self.limits.cap(purpose)
        try:
            asked = int(params.get("max_tokens") or 0)
        except (TypeError, ValueError):
            asked = 0
        params["max_tokens"] = asked if 0 < asked <= cap else cap
        return params

    def _key(self, kind: str, model: str, payload: Any, params: dict[str, Any]) -> str:
        canon = json.dumps({"kind": kind, "model": model, "api_base": self.api_base or "", "payload": payload,
                            "params": params}, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(canon.encode()).hexdigest()

    def _estimate(self, messages: list[dict[str, Any]] | None, params: dict[str, Any]) -> tuple[float, int]:
        """Worst case of one call: (USD, tokens) for the prompt plus ``max_tokens`` of completion."""
        if messages is None:
            return 0.0, 0
        lt = _litellm()
        try:
            prompt = int(lt.token_counter(model=self.model, messages=messages))
        except Exception:  # noqa: BLE001 - no tokenizer for this model: ~4 characters a token
            prompt = len(json.dumps(messages)) // 4 + 1
        completion = int(params.get("max_tokens") or self.limits.cap("harness"))
        try:
            p, c = lt.cost_per_token(model=self.model, prompt_tokens=prompt, completion_tokens=completion)
            usd = float(p) + float(c)
        except Exception:  # noqa: BLE001 - a model litellm has no price for (a local server): free
            usd = 0.0
        return usd, prompt + completion

    def _reserve(self, messages: list[dict[str, Any]] | None, params: dict[str, Any], purpose: str,
                 candidate: str) -> tuple[float, int]:
        """Refuse a call that could cross a budget, else hold its estimate until it is recorded, so
        concurrent calls (threads, the Ray broker actor) cannot cross it together either.

        A call that does not fit next to what is spent ends the budget (``exhausted``: every later call
        is refused, the engine stops); one that does not fit only next to calls in flight is refused
        alone; a harness call that would take its candidate past ``candidate_share`` of a budget fails
        that candidate (``CandidateFailure("llm_budget")``) and leaves the run's budget alone."""
        if self.budget is None and self.budget_tokens is None:
            return 0.0, 0
        with self._lock:
            if self.exhausted or (self.budget is not None and self.spent >= self.budget) or (
                    self.budget_tokens is not None and self.tokens >= self.budget_tokens):
                self.exhausted = True
                raise BudgetExceeded(f"LLM budget spent ({self.spent_text()}); no further calls")
        usd, tokens = self._estimate(messages, params)  # outside the lock: a tokenizer may be slow
        with self._lock:
            usd = max(usd, self.max_call)
            if candidate and purpose_kind(purpose) == "harness":
                self._check_share(candidate, usd, tokens)
            over_usd = self.budget is not None and self.spent + usd > self.budget
            over_tok = self.budget_tokens is not None and self.tokens + tokens > self.budget_tokens
            if over_usd or over_tok:
                self.exhausted = True
                raise BudgetExceeded(f"LLM budget: this call could use ~${usd:.4f} / {tokens:,} tokens next to "
                                     f"{self.spent_text()}; refused, no further calls (raise --budget-usd / "
                                     "--budget-tokens to allow more)")
            if (self.budget is not None and self.spent + self._reserved + usd > self.budget) or (
                    self.budget_tokens is not None
                    and self.tokens + self._reserved_tokens + tokens > self.budget_tokens):
                raise BudgetExceeded(f"LLM budget: this call could use ~${usd:.4f} / {tokens:,} tokens and calls "
                                     f"in flight hold ${self._reserved:.4f} / {self._reserved_tokens:,} tokens "
                                     f"next to {self.spent_text()}")
            self._reserved += usd
            self._reserved_tokens += tokens
            if candidate and purpose_kind(purpose) == "harness":
                c = self._cand.setdefault(candidate, [0.0, 0.0, 0.0, 0.0])
                c[2] += tokens
                c[3] += usd
            return usd, tokens

    def _check_share(self, candidate: str, usd: float, tokens: int) -> None:
        share = self.limits.candidate_share
        used_tok, used_usd, held_tok, held_usd = self._cand.get(candidate, [0.0, 0.0, 0.0, 0.0])
        if self.budget_tokens is not None and used_tok + held_tok + tokens > share * self.budget_tokens:
            raise CandidateFailure("llm_budget", f"this candidate's model calls would pass its share of the run's "
                                   f"token budget: {int(used_tok):,} tokens used, this call up to {tokens:,}, share "
                                   f"{share:g} x {self.budget_tokens:,}")
        if self.budget is not None and used_usd + held_usd + usd > share * self.budget:
            raise CandidateFailure("llm_budget", f"this candidate's model calls would pass its share of the run's "
                                   f"USD budget: ${used_usd:.4f} used, this call up to ${usd:.4f}, share "
                                   f"{share:g} x ${self.budget:g}")

    def _check_up(self) -> None:
        """Fail fast while the model is down: after ``DOWN_AFTER`` calls in a row failed for good (each
        with its retries), calls fail at once for ``DOWN_FOR_S`` seconds, so a dead server costs a few
        calls' timeouts, not one per probe of the run."""
        if self._down_until and time.monotonic() < self._down_until:
            msg = (f"{self.model}: the model is not answering ({self._failures} calls in a row failed: "
                   f"{self._last_error})")
            if self.down_halts:
                self.halted = msg
                raise ModelUnreachable(msg)
            raise LLMCallError(f"{msg}; not called again for {self._down_until - time.monotonic():.0f} s")

    def _note_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= DOWN_AFTER:
                self._down_until = time.monotonic() + DOWN_FOR_S

    def spent_text(self) -> str:
        parts = []
        if self.budget is not None:
            parts.append(f"${self.spent:.4f} of ${self.budget:g}")
        if self.budget_tokens is not None:
            parts.append(f"{self.tokens:,} of {self.budget_tokens:,} tokens")
        return " and ".join(parts) + " spent"

    def _release(self, held: tuple[float, int], candidate: str) -> None:
        usd, tokens = held
        with self._lock:
            self._reserved -= usd
            self._reserved_tokens -= tokens
            c = self._cand.get(candidate)
            if c is not None:
                c[2] -= tokens
                c[3] -= usd

    def _record(self, kind: str, purpose: str, model: str, pt: int, ct: int, cost: float, cached: bool, ms: float,
                candidate: str = "", error: str = "") -> None:
        rec = CallRecord(ts=time.time(), run=self.run_id, purpose=purpose, kind=kind, model=model, prompt_tokens=pt,
                         completion_tokens=ct, cost=cost, cached=cached, ms=ms, program=candidate, error=error)
        with self._lock:
            self.spent += cost
            self.tokens += pt + ct
            self.max_call = max(self.max_call, cost)
            if candidate:
                c = self._cand.setdefault(candidate, [0.0, 0.0, 0.0, 0.0])
                c[0] += pt + ct
                c[1] += cost
            if (self.budget is not None and self.spent >= self.budget) or (
                    self.budget_tokens is not None and self.tokens >= self.budget_tokens):
                self.exhausted = True
        self.calls_store.record(rec)
        if self.on_call is not None:
            self.on_call(rec)
