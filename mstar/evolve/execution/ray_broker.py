"""The run's LLM broker as one Ray actor (docs/ARCHITECTURE.md#broker): every harness ``llm`` call made by any Ray worker
is answered here. (Embeddings are not: each worker builds the run's local embedder by name, see
``ray_executor``, so no model is pickled and a harness scores the same as inline.)

Why one actor: litellm is imported once per run (not once per worker), the response cache and the
cost ledger are shared, and the hard USD budget is checked in one place. The actor wraps the same
``Ledger`` the engine uses, over the run's own ``run.db``: its cache table is the engine's, so a
task retried after its worker died gets the answers it already paid for from the cache (recorded as
``cached`` calls, cost 0), and a resumed run does too.

Per-job attribution: each call carries the id of the job that made it; the actor adds the tokens
and cost of uncached replies to that job, and the driver collects them with ``take_usage`` when the
job's result arrives. Retried attempts share the job id, so a job's cost covers all its attempts.

This module does not import Ray; ``ray_executor`` wraps ``BrokerActor`` with ``ray.remote``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mstar.broker import Backend, LLMReply
from mstar.evolve.store.ledger import Ledger


class _ThreadStores:
    """A ``RunStore`` per actor thread: sqlite connections must not cross threads, and the actor
    serves several workers' calls at once (a threaded actor)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._local = threading.local()

    def _store(self) -> Any:
        s = getattr(self._local, "store", None)
        if s is None:
            from mstar.evolve.store.run_store import RunStore

            s = self._local.store = RunStore(self.run_dir)
        return s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store(), name)


class _UsageBackend:
    """Wraps the model backend to attribute each uncached reply to the job whose thread made it."""

    def __init__(self, inner: Backend, on_reply: Callable[[LLMReply], None]):
        self.inner = inner
        self.on_reply = on_reply

    def __call__(self, messages: list[dict[str, Any]], **kw: Any) -> LLMReply:
        reply = self.inner(messages, **kw)
        self.on_reply(reply)
        return reply


class BrokerActor:
    def __init__(self, run_dir: str | None, backend: Backend | None, model: str = "",
                 budget_usd: float | None = None, budget_tokens: int | None = None, limits: Any = None):
        self._store = _ThreadStores(Path(run_dir)) if run_dir else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._usage: dict[str, list[float]] = {}
        wrapped = _UsageBackend(backend, self._charge) if backend is not None else None
        self.ledger = Ledger(self._store, wrapped, model, budget_usd, budget_tokens, limits)

    def _charge(self, reply: LLMReply) -> None:
        job = getattr(self._local, "job", "")
        with self._lock:
            u = self._usage.setdefault(job, [0, 0.0])
            u[0] += reply.prompt_tokens + reply.completion_tokens
            u[1] += reply.cost

    def _sync_spent(self) -> None:
        # The engine's own ledger (operators' calls) writes to the same table: the budget check here
        # must see that spend too. max(): calls of this actor in flight are counted but not yet stored.
        if self._store is not None:
            tokens, spent = self._store.llm_totals()
            self.ledger.tokens = max(self.ledger.tokens, tokens)
            self.ledger.spent = max(self.ledger.spent, spent)

    def ping(self) -> int:
        import os

        return os.getpid()

    def llm(self, job: str, purpose: str, messages: list[dict[str, Any]] | str, kw: dict[str, Any],
            candidate: str = "") -> str:
        """One call for ``job``; ``candidate`` (the program id) for a harness's calls, so its share of
        the budget is counted here, where all its episodes' calls arrive."""
        self._local.job = job
        self._sync_spent()
        return self.ledger.ask(messages, purpose, dict(kw or {}), candidate)

    def take_usage(self, job: str) -> tuple[int, float, bool]:
        """(tokens, cost) charged to ``job`` (all its attempts), and whether the budget is exhausted."""
        with self._lock:
            tokens, cost = self._usage.pop(job, (0, 0.0))
        return int(tokens), float(cost), self.ledger.exhausted
