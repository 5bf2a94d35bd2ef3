"""The run's LLM ledger: the broker (``mstar.broker``) with its cache and its ledger in the run's
``run.db`` (tables ``llm_cache`` and ``llm_calls``, docs/ARCHITECTURE.md#run-store).

Every model call of an evolve run -- operators', the QA scorer's, harnesses' from any sandbox or Ray
worker -- goes through one of these: cached, recorded with its tokens and cost, and refused before it
could cross a hard budget, USD or tokens (``BudgetExceeded``; once no call of the run's usual size fits, the
ledger is ``exhausted`` and the engine stops). Being in ``run.db``, the cache and the spend survive a
``kill -9``: a resumed run gets the answers it already paid for, at no cost, and its budget counts what
was spent before.
"""

from __future__ import annotations

from typing import Any

from mstar.broker import Backend, Broker, CallRecord
from mstar.llm_limits import LLMLimits


class RunStoreCalls:
    """A ``CallStore`` over a ``RunStore`` (one run per ``run.db``, so ``run`` is not stored)."""

    def __init__(self, store: Any):
        self.store = store

    def cache_get(self, key: str) -> dict[str, Any] | None:
        return self.store.cache_get(key)

    def cache_put(self, key: str, kind: str, response: dict[str, Any]) -> None:
        self.store.cache_put(key, response)

    def record(self, rec: CallRecord) -> None:
        self.store.add_llm_call(rec.purpose, rec.model, rec.prompt_tokens, rec.completion_tokens, rec.cost, rec.cached,
                                program=rec.program, kind=rec.kind, ms=rec.ms, error=rec.error)

    def spent(self, run: str) -> tuple[int, float]:
        return self.store.llm_totals()

    def calls(self, run: str) -> list[CallRecord]:
        rows = self.store.conn.execute("SELECT ts, purpose, model, prompt_tokens, completion_tokens, cost, cached, "
                                       "program, kind, ms, error FROM llm_calls ORDER BY id").fetchall()
        return [CallRecord(ts=r[0], run=run, purpose=r[1], kind=r[8], model=r[2], prompt_tokens=r[3],
                           completion_tokens=r[4], cost=r[5], cached=bool(r[6]), program=r[7], ms=r[9], error=r[10]) for r in rows]


class _Forgetful:
    """No run store (a dry engine in tests): nothing cached, nothing kept."""

    def cache_get(self, key: str) -> dict[str, Any] | None:
        return None

    def cache_put(self, key: str, kind: str, response: dict[str, Any]) -> None:
        pass

    def record(self, rec: CallRecord) -> None:
        pass

    def spent(self, run: str) -> tuple[int, float]:
        return 0, 0.0

    def calls(self, run: str) -> list[CallRecord]:
        return []


class Ledger(Broker):
    def __init__(self, store: Any, backend: Backend | None, model: str = "", budget_usd: float | None = None,
                 budget_tokens: int | None = None, limits: LLMLimits | None = None, run_id: str = ""):
        super().__init__(model or None, budget_usd=budget_usd, budget_tokens=budget_tokens, limits=limits,
                         backend=backend, run_id=run_id, down_halts=True,
                         store=RunStoreCalls(store) if store is not None else _Forgetful())
        self.store = store  # the RunStore: the Ray executor opens the same run.db in its broker actor
