"""Where an ablation run's time goes, measured from outside the engine (bench/search_ablation.py).

Wrappers around the run's executor (time per job, and the engine's own time on each result: diagnosis, the
store write, the score book) and around the operators (time per proposal), plus the per-episode timings
every evaluation result carries (``mstar.evaluate.EpisodeResult``: open/close, scoring, diagnosis re-reads).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mstar.evolve.core.config import EvolveConfig
from mstar.evolve.core.engine import Engine
from mstar.evolve.operators.registry import load_operators


@dataclass
class Clock:
    """What one run spent its time on, seen from outside the engine (wrappers around the executor and the
    operators) plus the per-episode timings every evaluation result carries."""

    t0: float = field(default_factory=time.perf_counter)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    proposals: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def job(self, jr: Any, exec_s: float) -> dict[str, Any]:
        r, job = jr.result, jr.job
        rec = {"split": job.split, "tag": job.tag, "end_s": time.perf_counter() - self.t0,
               "exec_s": exec_s, "wall_s": r.wall_s,
               "open_s": getattr(r, "open_ms", 0.0) / 1000, "close_s": getattr(r, "close_ms", 0.0) / 1000,
               "harness_s": (sum(r.write_ms) + sum(r.manage_ms) + sum(p.read_ms for p in r.probes)) / 1000,
               "diag_read_s": getattr(r, "diag_read_ms", 0.0) / 1000, "score_s": getattr(r, "score_ms", 0.0) / 1000,
               "record_s": 0.0}
        rec["start_s"] = rec["end_s"] - exec_s
        self.jobs.append(rec)
        return rec


class TimedExecutor:
    """Delegates to the run's executor; times each job, and the caller's work on each result (recording)."""

    def __init__(self, inner: Any, clock: Clock):
        self.inner, self.clock = inner, clock
        self.name = getattr(inner, "name", "?")

    def map(self, jobs: Any) -> Iterator[Any]:
        it = self.inner.map(jobs)
        try:
            while True:
                t0 = time.perf_counter()
                jr = next(it, None)
                if jr is None:
                    return
                t1 = time.perf_counter()
                rec = self.clock.job(jr, t1 - t0)
                yield jr
                rec["record_s"] = time.perf_counter() - t1
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TimedOperator:
    def __init__(self, inner: Any, name: str, clock: Clock):
        self.inner, self.op_name, self.clock = inner, name, clock

    def propose(self, parents: Any, ctx: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.inner.propose(parents, ctx)
        finally:
            self.clock.proposals.append((self.op_name, time.perf_counter() - t0))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class HookMissing(RuntimeError):
    """The engine lacks a hook the ablation measures or narrows through: the numbers would be wrong, so no run."""


class AblationEngine(Engine):
    """The real engine, with the executor timed and the parts bin of `structural` narrowed. Each hook it
    needs is checked: a missing one stops the run (a silently unnarrowed parts bin or untimed executor would
    give numbers that look right and are not)."""

    def __init__(self, *a: Any, clock: Clock, exclude_parts: tuple[str, ...] = (), **kw: Any):
        if not callable(getattr(Engine, "_parts_bin", None)) or not callable(getattr(Engine, "_setup", None)):
            raise HookMissing("mstar's Engine has no _parts_bin/_setup hook: the ablation cannot narrow or time it")
        super().__init__(*a, **kw)
        self.clock, self.exclude_parts = clock, set(exclude_parts)

    def _parts_bin(self) -> dict[str, str]:
        return {k: v for k, v in super()._parts_bin().items() if k not in self.exclude_parts}

    def _setup(self) -> None:
        super()._setup()
        ex, ev = getattr(self, "_executor", None), getattr(self, "evaluator", None)
        if ex is None or getattr(ev, "executor", None) is not ex:
            raise HookMissing("the engine's executor was not found on Engine._executor / evaluator.executor: "
                              "no per-job timings")
        self._executor = ev.executor = TimedExecutor(ex, self.clock)
        parts = getattr(getattr(self, "breeder", None), "seeds", None)
        if not isinstance(parts, dict):
            raise HookMissing("the breeder's parts bin (Breeder.seeds) was not found: cannot check it was narrowed")
        if self.exclude_parts & set(parts):
            raise HookMissing(f"the parts bin still holds {sorted(self.exclude_parts & set(parts))}")


def timed_operators(cfg: EvolveConfig, clock: Clock) -> dict[str, Any]:
    return {n: TimedOperator(op, n, clock) for n, op in load_operators(cfg.operators).items()}


BUCKETS = ("sandbox start/stop", "harness write/read", "diagnosis re-reads", "scoring on host",
           "IPC and episode plumbing", "executor overhead", "recording (diagnosis, store)",
           "proposals (operators)", "engine rest (setup, selection)")


def breakdown(clock: Clock, wall: float) -> dict[str, Any]:
    def total(key: str, jobs: list[dict[str, Any]] | None = None) -> float:
        return sum(j[key] for j in (clock.jobs if jobs is None else jobs))

    inner = total("open_s") + total("close_s") + total("harness_s") + total("diag_read_s") + total("score_s")
    mini = [j for j in clock.jobs if j["tag"] == "minibatch"]
    propose = sum(s for _, s in clock.proposals) - total("exec_s", mini) - total("record_s", mini)
    parts = {"sandbox start/stop": total("open_s") + total("close_s"), "harness write/read": total("harness_s"),
             "diagnosis re-reads": total("diag_read_s"), "scoring on host": total("score_s"),
             "IPC and episode plumbing": total("wall_s") - inner, "executor overhead": total("exec_s") - total("wall_s"),
             "recording (diagnosis, store)": total("record_s"), "proposals (operators)": max(propose, 0.0)}
    parts["engine rest (setup, selection)"] = wall - sum(parts.values())
    final = [j["start_s"] for j in clock.jobs if j["split"] in ("val", "test")]
    search_s = min(final) if final else wall
    search_jobs = [j for j in clock.jobs if j["split"] == "train"]
    return {"seconds": {k: round(v, 3) for k, v in parts.items()}, "jobs": len(clock.jobs),
            "search_jobs": len(search_jobs), "minibatch_jobs": len(mini), "search_s": round(search_s, 2),
            "evals_per_min": round(60 * len(search_jobs) / search_s, 1) if search_s > 0 else None,
            "proposals": len(clock.proposals)}
