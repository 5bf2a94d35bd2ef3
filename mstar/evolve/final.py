"""The end of a run (DESIGN §8): pick the program on ``val``, touch ``test`` once, report.

Candidates are the ``final_k`` best programs on train plus every seed. All are scored on val; of
those val cannot tell from the best on val (within one standard error, paired per probe), the best on
train is the run's result (``selection``) and is written to ``best.py``. Test is
evaluated for that program and for every seed only, so the report shows the evolved program and the
seed library side by side on data the search never saw. These evaluations cannot be stopped softly
(a stop has already been asked for when we get here); a second Ctrl-C aborts, and ``--resume``
redoes only what is missing.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from mstar.evolve.selection import choose

if TYPE_CHECKING:
    from mstar.evolve.engine import Engine


def _probe_values(eng: Engine, pid: str, split: str) -> dict[str, float]:
    """The objective per probe (``episode/probe``), as the score book counts it: probes without a
    value (e.g. abstention for recall) left out."""
    out: dict[str, float] = {}
    ids = set(eng.ids[split])
    for episode, probe, metrics in eng.store.probe_metrics(pid, split):
        if episode in ids:
            v = json.loads(metrics).get(eng.config.metric)
            if v is not None:
                out[f"{episode}/{probe}"] = float(v)
    return out


def _score(eng: Engine, pid: str, split: str) -> float | None:
    ids = eng.ids[split]
    return eng.book.score(pid, split, ids) if ids else None


def finish(eng: Engine) -> dict[str, Any]:
    eng.view.update(phase="final: val/test")
    train_ids = eng.ids["train"]
    scored = [pid for pid, rec in eng.programs.items()
              if rec.status in ("seed", "accepted") and eng.book.stats(pid, "train", train_ids) is not None]
    order = {pid: i for i, pid in enumerate(eng.programs)}
    ranked = sorted(scored, key=lambda p: (-(eng._train(p) or 0.0), order[p]))
    seed_ids = [r.id for r in eng.seeds]
    candidates = list(dict.fromkeys(ranked[: eng.config.final_k] + seed_ids))
    targets = [eng._target(p) for p in candidates]
    if eng.ids["val"]:
        eng.view.log(f"final: scoring {len(targets)} programs on val ({len(eng.ids['val'])} episodes)")
        eng.evaluator.ensure(targets, "val", eng.ids["val"], stoppable=False)
    pool = [p for p in candidates if eng.book.stats(p, "train", train_ids) is not None] or candidates
    if eng.ids["val"]:
        best, tied = choose(pool, lambda p: _score(eng, p, "val"), eng._train, lambda p: _probe_values(eng, p, "val"),
                            order, eng.config.select)
        if best is not None and eng.config.select == "1se":
            eng.view.log(f"final: {len(tied)} of {len(pool)} programs within one standard error of the best on val; "
                         f"the best of them on train is returned")
    else:
        best = min(pool, key=lambda p: (-(eng._train(p) or 0.0), order[p])) if pool else None
    if eng.ids["test"]:
        test_targets = [eng._target(p) for p in dict.fromkeys(([best] if best else []) + seed_ids)]
        eng.view.log(f"final: scoring {len(test_targets)} programs on test ({len(eng.ids['test'])} episodes)")
        eng.evaluator.ensure(test_targets, "test", eng.ids["test"], stoppable=False)
    if best is not None:
        eng.best_id = best
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.4f}"

        eng._write_best(f"picked on val (--select {eng.config.select}); {eng.config.metric}@{eng.config.budget}: train {f(eng._train(best))}, "
                        f"val {f(_score(eng, best, 'val'))}, test {f(_score(eng, best, 'test'))}")
    summary = summarize(eng, best)
    with eng.store.tx():
        eng.store.event("final", summary)
        eng.store.set_state("final", summary)
    return summary


def summarize(eng: Engine, best: str | None) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for p in eng.store.proposals():
        counts[p.outcome] = counts.get(p.outcome, 0) + 1
    rec = eng.programs.get(best) if best else None
    wall = eng.store.get_state("wall_s", 0.0) + (time.monotonic() - eng.t0)
    tokens, usd = eng.store.llm_totals()
    return {
        "run_dir": str(eng.run_dir),
        "run_id": eng.config.run_id,
        "task": eng.config.task,
        "metric": eng.config.metric,
        "metric_version": eng.store.metric_version(),
        "budget": eng.config.budget,
        "best": {
            "id": best,
            "name": rec.name if rec else None,
            "operator": rec.operator if rec else None,
            "train": eng._train(best) if best else None,
            "val": _score(eng, best, "val") if best else None,
            "test": _score(eng, best, "test") if best else None,
        },
        "seeds": {r.name: {"id": r.id, "train": eng._train(r.id), "val": _score(eng, r.id, "val"),
                           "test": _score(eng, r.id, "test")} for r in eng.seeds},
        "evaluations": eng.evaluations,
        "generations": eng.store.get_state("generation_done", 0) or 0,
        "proposals": counts,
        "stop_reason": eng.stop_reason or "finished",
        "wall_s": round(wall, 2),
        "usd": usd,
        "tokens": tokens,
    }
