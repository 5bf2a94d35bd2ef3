"""The end of a run (docs/ARCHITECTURE.md#final-step): pick the program on ``val``, touch ``test`` once, report.

Candidates are the ``final_k`` best programs on train plus every seed. All are scored on val; of
those val cannot tell from the best on val (within one standard error, paired per probe), the best on
train is the run's result (``selection``) and is written to ``best.py``. In a joint run the pool is
first narrowed to the programs that lose to no seed on any suite's val, when there are any
(``suite_floor``; ``--no-suite-floor`` skips it). Test is
evaluated for that program and for every seed only, so the report shows the evolved program and the
seed library side by side on data the search never saw.

The step has its own time limit (``StopConfig.final_minutes``): val may use half of it, test the rest.
Programs are scored in order of importance (the best on train first, then the seeds; on test the
picked program first); what does not fit is skipped -- those programs show no val or test score, and
the summary's ``final`` entry says how many evaluations were skipped and why. A second Ctrl-C aborts,
and ``--resume`` redoes only what is missing.
"""

from __future__ import annotations

import math
import time
from typing import Any

from mstar.evolve.core.run_state import RunState
from mstar.evolve.core.selection import choose
from mstar.evolve.core.transfer import per_suite, score_transfer, suite_ids, transfer_rows


def _score(eng: RunState, pid: str, split: str) -> float | None:
    return eng.score(pid, split)


def _entry(eng: RunState, pid: str) -> dict[str, Any]:
    out = {"train": eng.train(pid), "val": _score(eng, pid, "val"), "test": _score(eng, pid, "test")}
    suites = per_suite(eng, pid)  # a joint run: each suite's own scores too
    return out | {"suites": suites} if suites else out


def budget_note(eng: RunState, seeds_done: bool) -> str | None:
    """When a limit ended the search before any child was accepted: say so, and what would be enough
    (the seeds' scoring plus three generations, at this session's pace, the final step included).
    ``seeds_done``: whether the seeds had their train scores when the search stopped."""
    if (eng.store.get_state("generation_done", 0) or 0) > 0:
        return None
    if any(rec.status == "accepted" for rec in eng.programs.values()):
        return None
    if not (eng.stop_reason or "").startswith(("time limit", "evaluation limit", "budget spent")):
        return None
    n_train, cfg = len(eng.ids["train"]), eng.config
    per_eval = (time.monotonic() - eng.t0) / max(eng.evaluator.evaluations, 1)
    evals = len(eng.seeds) * n_train + 3 * cfg.children_per_gen * (cfg.screen_episodes + n_train)
    minutes = max(1, math.ceil(evals * per_eval / 60))
    when = ("scoring the seeds on train took the whole search" if seeds_done
            else "the limit came while the seeds were scored on train (their scoring was finished after it)")
    return (f"nothing evolved: {when}; the result is the best seed. At this session's pace "
            f"({per_eval:.1f} s per evaluation) about --max-minutes {minutes} scores the seeds and runs "
            f"3 generations ({evals} evaluations)")


def _bounded(eng: RunState, targets: list[Any], split: str, deadline: float) -> int:
    """Score ``targets`` on ``split`` until ``deadline``; returns how many evaluations were skipped."""
    ids = eng.ids[split]
    if eng.stopper is not None:
        eng.stopper.final_deadline = deadline  # the watcher abandons what is in flight at the deadline

    def past() -> str | None:
        return "final time limit" if time.monotonic() >= deadline else None

    eng.evaluator.ensure(targets, split, ids, stoppable=False, until=past)
    return sum(1 for t in targets for ep in ids if not eng.book.has(t.id, split, ep))


def suite_floor(eng: RunState, pool: list[str]) -> tuple[list[str], dict[str, str]]:
    """A joint run's programs that lose to no seed on any suite's val: each suite's val score at least
    that of the suite's best seed there (the joint mean alone would trade one suite for another).
    Returns (those programs, {suite: its best seed's name}); a suite without val scores sets no floor."""
    keep, best_seed = list(pool), {}
    for label in eng.suites:
        ids = suite_ids(eng, "val", label)
        scored = [(v, r) for r in eng.seeds if ids and (v := eng.book.score(r.id, "val", ids)) is not None]
        if not scored:
            continue
        top, rec = max(scored, key=lambda s: s[0])
        best_seed[label] = rec.name
        keep = [p for p in keep if (v := eng.book.score(p, "val", ids)) is not None and v >= top]
    return keep, best_seed


def _why(eng: RunState) -> str:
    stop = eng.evaluator.budget_stop
    return f"the model cannot be used ({stop[:160]})" if stop else "time limit"


def finish(eng: RunState) -> dict[str, Any]:
    seeds_done = all(eng.train(r.id) is not None for r in eng.seeds)
    eng.view.update(phase="final: val/test")
    train_ids = eng.ids["train"]
    scored = [pid for pid, rec in eng.programs.items()
              if rec.status in ("seed", "accepted") and eng.book.stats(pid, "train", train_ids) is not None]
    order = {pid: i for i, pid in enumerate(eng.programs)}
    ranked = sorted(scored, key=lambda p: (-(eng.train(p) or 0.0), order[p]))
    seed_ids = [r.id for r in eng.seeds]
    candidates = list(dict.fromkeys(ranked[: eng.config.final_k] + seed_ids))
    targets = [eng.target(p) for p in candidates]
    limit_s = eng.config.stops.final_minutes * 60
    t0 = time.monotonic()
    skipped: dict[str, int] = {}
    unfinished = [eng.target(p) for p in candidates if eng.train(p) is None]
    if unfinished:  # the search stopped while the seeds were scored: the pick (and the report) needs train
        eng.view.log(f"final: finishing the train scores of {len(unfinished)} seeds ({len(train_ids)} episodes)")
        skipped["train"] = _bounded(eng, unfinished, "train", t0 + limit_s / 2)
    if eng.ids["val"]:
        eng.view.log(f"final: scoring {len(targets)} programs on val ({len(eng.ids['val'])} episodes, "
                     f"at most {limit_s / 120:.1f} min)")
        skipped["val"] = _bounded(eng, targets, "val", t0 + limit_s / 2)
    pool = [p for p in candidates if eng.book.stats(p, "train", train_ids) is not None] or candidates
    if skipped.get("val"):
        full = [p for p in pool if _score(eng, p, "val") is not None]
        pool = full or pool
        eng.view.log(f"final: {_why(eng)}: {skipped['val']} val evaluations skipped; " + (
            f"the pick is made among the {len(full)} programs with a val score" if full
            else "no program has a val score: the best on train is returned"))
    floor_note: dict[str, Any] | None = None
    if eng.ids["val"] and len(eng.suites) > 1 and eng.config.suite_floor:
        floor, best_seed = suite_floor(eng, pool)
        floor_note = {"best_seeds": best_seed, "programs": len(floor), "of": len(pool)}
        seeds_named = ", ".join(f"{k} {v}" for k, v in best_seed.items())
        if floor:
            eng.view.log(f"final: {len(floor)} of {len(pool)} programs lose to no seed on any suite's val "
                         f"(best seeds: {seeds_named}); the pick is made among them")
            pool = floor
        else:
            eng.view.log(f"final: no program reaches every suite's best seed on val ({seeds_named}); "
                         "the pick is made on the joint score")
    if eng.ids["val"]:
        best, tied = choose(pool, lambda p: _score(eng, p, "val"), eng.train, lambda p: eng.probe_values(p, "val"),
                            order, eng.config.select)
        if best is not None and eng.config.select == "1se":
            eng.view.log(f"final: {len(tied)} of {len(pool)} programs within one standard error of the best on val; "
                         f"the best of them on train is returned")
    else:
        best = min(pool, key=lambda p: (-(eng.train(p) or 0.0), order[p])) if pool else None
    if eng.ids["test"]:
        test_targets = [eng.target(p) for p in dict.fromkeys(([best] if best else []) + seed_ids)]
        eng.view.log(f"final: scoring {len(test_targets)} programs on test ({len(eng.ids['test'])} episodes)")
        skipped["test"] = _bounded(eng, test_targets, "test", t0 + limit_s)
        if skipped["test"]:
            eng.view.log(f"final: {_why(eng)}: {skipped['test']} test evaluations skipped (shown as '-')")
    programs = list(dict.fromkeys(([best] if best else []) + seed_ids))
    skipped |= score_transfer(eng, programs, t0 + limit_s, _bounded)  # the same limit as val and test
    if best is not None:
        eng.best_id = best
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.4f}"

        eng.write_best(f"picked on val (--select {eng.config.select}); {eng.config.metric}@{eng.config.budget}: train {f(eng.train(best))}, "
                        f"val {f(_score(eng, best, 'val'))}, test {f(_score(eng, best, 'test'))}")
    summary = summarize(eng, best)
    summary["note"] = budget_note(eng, seeds_done)
    summary["final"] = {"minutes_limit": eng.config.stops.final_minutes, "skipped": skipped,
                        "seconds": round(time.monotonic() - t0, 1)}
    if floor_note is not None:
        summary["final"]["suite_floor"] = floor_note
    with eng.store.tx():
        eng.store.event("final", summary)
        eng.store.set_state("final", summary)
    return summary


def summarize(eng: RunState, best: str | None) -> dict[str, Any]:
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
            **(_entry(eng, best) if best else {"train": None, "val": None, "test": None}),
        },
        "seeds": {r.name: {"id": r.id, **_entry(eng, r.id)} for r in eng.seeds},
        **({"transfer": transfer_rows(eng, best), "transfer_split": dict(eng.transfer)} if eng.transfer else {}),
        "evaluations": eng.evaluations(),
        "generations": eng.store.get_state("generation_done", 0) or 0,
        "proposals": counts,
        "stop_reason": eng.stop_reason or "finished",
        "wall_s": round(wall, 2),
        "usd": usd,
        "tokens": tokens,
    }
