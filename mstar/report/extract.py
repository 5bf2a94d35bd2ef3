"""Everything the report shows, read from a run directory in one short read transaction.

The result is a plain JSON-able dict (the page's only data); the browser does the drawing. Scores are
probe-weighted means of the run's metric, as the engine counts them, aggregated in SQL so a store of a
few hundred programs and a few hundred thousand probe rows reads in well under a second.
"""

from __future__ import annotations

import difflib
import json
import sqlite3
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from mstar.report.source import RunReadError, check_schema, load_config, read_only, run_status
from mstar.tasks.joint import SEP, group_of

SELECTION_RULES = {
    "1se": "of the best programs on train and every seed, all scored on val: among those within one standard "
           "error of the best on val (paired per probe), the best on train; test is scored once, for it and the seeds",
    "val": "of the best programs on train and every seed, all scored on val: the best on val; "
           "test is scored once, for it and the seeds",
}
EXAMPLES_PER_PROGRAM = 6  # diagnosed failures shown per program (the counts cover all of them)


def stamp(run_dir: Path) -> list[Any]:
    """A cheap fingerprint of the store's contents: it changes whenever the run writes something."""
    with read_only(run_dir) as c:
        check_schema(c, Path(run_dir) / "run.db")
        return list(c.execute(
            "SELECT (SELECT COUNT(*) FROM programs), (SELECT COUNT(*) FROM evaluations WHERE probe=''), "
            "(SELECT COALESCE(MAX(id),0) FROM events), (SELECT COUNT(*) FROM proposals WHERE outcome!='pending'), "
            "(SELECT COUNT(*) FROM llm_calls)").fetchone())


def _metric_path(metric: str) -> str:
    return '$."' + metric.replace('"', "") + '"'


def extract(run_dir: Path, cache: Cache | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    with read_only(run_dir) as c:
        check_schema(c, run_dir / "run.db")
        state = {k: _loads(v) for k, v in c.execute("SELECT key, value FROM state")}
        metric = str(cfg.get("metric") or (state.get("final") or {}).get("metric") or "evidence_recall")
        data = _read(c, metric, cache)
    final = state.get("final")
    sessions = [e for e in data["events"] if e["kind"] == "session"]
    last_pid = sessions[-1]["payload"].get("pid") if sessions else None
    status = run_status(run_dir, final, last_pid)
    metric_version = cfg.get("metric_version", state.get("metric_version"))
    programs = data["programs"]
    _attach_scores(programs, data, cfg)
    best_id = (final or {}).get("best", {}).get("id") or _best_so_far(data["events"])
    return {
        "run": {
            "dir": str(run_dir), "id": cfg.get("run_id") or run_dir.name, "task": cfg.get("task"),
            "metric": metric, "budget": cfg.get("budget"), "status": status,
            "metric_version": metric_version if metric_version is not None else "unknown (before metric v2)",
            "select": cfg.get("select", "1se"), "selection_rule": SELECTION_RULES.get(cfg.get("select", "1se"), ""),
            "generation_done": state.get("generation_done"), "wall_s": state.get("wall_s"),
            "stop_reason": (final or {}).get("stop_reason"), "islands": cfg.get("islands"),
            "config": cfg, "best_id": best_id,
        },
        "splits": data["splits"],
        "programs": programs,
        "generations": _generations(data["events"], programs),
        "final": _final_table(final, programs, best_id),
        "heatmap": _heatmap(data["cells"], programs, best_id, joint=_is_joint(cfg)),
        "operators": _operators(data, programs),
        "pareto": _pareto(programs),
        "incidents": _incidents(data["events"]),
    }


def _loads(v: str) -> Any:
    try:
        return json.loads(v)
    except ValueError:
        return v


def _example(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d.get(k) for k in ("probe_id", "category", "question", "stage", "recall", "evidence_texts",
                                  "context_excerpt", "error") if d.get(k) is not None}


class Cache:
    """What a long-lived reader (the dashboard) keeps between extractions of one run.

    A finished episode's probe rows are written once, in one transaction with its summary row, so their
    aggregate is keyed by the summary row's (program, split, episode, created): a live run's next
    extraction aggregates only the episodes that finished since the last one."""

    BULK = 200  # more new episodes than this: one pass over the whole table beats one query each

    def __init__(self, metric: str):
        self.metric = metric
        self.cells: dict[tuple[str, str, str], tuple[float, list[tuple]]] = {}
        self.examples: dict[str, list[dict[str, Any]]] = {}

    # (program, split, episode, category, diagnosed stage) -> metric sum, metric n, probes, tokens, latency ms
    _SELECT = ("SELECT e.program, e.split, e.episode, COALESCE(json_extract(e.metrics, '$.category'), 'default'), "
               "json_extract(e.diagnosis, '$.stage'), SUM(json_extract(e.metrics, '{p}')), "
               "COUNT(json_extract(e.metrics, '{p}')), COUNT(*), SUM(e.tokens), SUM(e.latency) FROM evaluations e ")

    def refresh(self, c: sqlite3.Connection, done: dict[tuple[str, str, str], float]) -> None:
        for key in [k for k in self.cells if k not in done]:
            del self.cells[key]
        new = [k for k, t in done.items() if k not in self.cells or self.cells[k][0] != t]
        if not new:
            return
        select = self._SELECT.format(p=_metric_path(self.metric))
        fresh: dict[tuple[str, str, str], list[tuple]] = defaultdict(list)
        if len(new) > self.BULK:
            for r in c.execute(select + "WHERE e.seq>=0 GROUP BY e.program, e.split, e.episode, 4, 5"):
                fresh[(r[0], r[1], r[2])].append(r)
        else:
            for key in new:
                fresh[key] = c.execute(select + "WHERE e.program=? AND e.split=? AND e.episode=? AND e.seq>=0 "
                                       "GROUP BY 4, 5", key).fetchall()
        for key in new:
            self.cells[key] = (done[key], fresh.get(key, []))


def _read(c: sqlite3.Connection, metric: str, cache: Cache | None = None) -> dict[str, Any]:
    programs = []
    for r in c.execute("SELECT id, name, parents, island, generation, operator, source, knobs, status, error, note, "
                       "created FROM programs ORDER BY created, rowid"):
        programs.append({"id": r[0], "name": r[1], "parents": _loads(r[2]) or [], "island": r[3], "generation": r[4],
                         "operator": r[5], "source": r[6], "knobs": _loads(r[7]), "status": r[8], "error": r[9],
                         "note": r[10], "created": r[11]})
    episodes = {}
    created: dict[tuple[str, str, str], float] = {}
    for r in c.execute("SELECT program, split, episode, metrics, cost, latency, created FROM evaluations WHERE probe=''"):
        m = _loads(r[3]) if r[3] else {}
        episodes[(r[0], r[1], r[2])] = {"failure": (m or {}).get("failure"), "detail": (m or {}).get("detail"),
                                        "cost": r[4], "wall_s": (m or {}).get("wall_s", r[5] / 1000)}
        created[(r[0], r[1], r[2])] = r[6]
    cache = cache if cache is not None else Cache(metric)
    if cache.metric != metric:  # a first use, or the run dir now holds another run
        cache.__init__(metric)
    cache.refresh(c, created)
    cells = []
    diag_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rows in cache.cells.values():
        for r in rows[1]:
            cells.append(r[:4] + r[5:])
            if r[4] is not None and r[1] == "train":
                diag_counts[r[0]][str(r[4])] += r[7]
    diag_examples: dict[str, list[dict[str, Any]]] = {}
    for pid in diag_counts:  # a few rows per program, straight off the primary key
        if len(cache.examples.get(pid, ())) < EXAMPLES_PER_PROGRAM:
            cache.examples[pid] = [_example(_loads(d) or {}) for (d,) in c.execute(
                "SELECT diagnosis FROM evaluations WHERE program=? AND split='train' AND diagnosis IS NOT NULL "
                "LIMIT ?", (pid, EXAMPLES_PER_PROGRAM))]
        diag_examples[pid] = cache.examples[pid]
    events = [{"id": r[0], "ts": r[1], "kind": r[2], "payload": _loads(r[3])}
              for r in c.execute("SELECT id, ts, kind, payload FROM events WHERE kind IN "
                                 "('generation','seeds','session','best','final','migration','island_reset','diagnosis_error') "
                                 "ORDER BY id")]
    proposals = [dict(zip(("generation", "slot", "island", "operator", "parents", "program", "outcome", "reason",
                           "screen", "train", "created"), r, strict=True))
                 for r in c.execute("SELECT generation, slot, island, operator, parents, program, outcome, reason, "
                                    "screen, train, created FROM proposals ORDER BY generation, slot")]
    llm = [dict(zip(("purpose", "calls", "tokens", "cost", "cached"), r, strict=True)) for r in c.execute(
        "SELECT purpose, COUNT(*), SUM(tokens), SUM(cost), SUM(cached) FROM llm_calls GROUP BY purpose")]
    splits: dict[str, set[str]] = defaultdict(set)
    for _pid, split, ep in episodes:
        splits[split].add(ep)
    return {"programs": programs, "cells": cells, "episodes": episodes, "diag_counts": diag_counts,
            "diag_examples": diag_examples, "events": events, "proposals": proposals, "llm": llm,
            "splits": {s: sorted(v) for s, v in splits.items()}}


def _is_joint(cfg: dict[str, Any]) -> bool:
    """A run of several suites at once (mstar.tasks.joint)."""
    return len(cfg.get("suites") or []) > 1


def _attach_scores(programs: list[dict[str, Any]], data: dict[str, Any], cfg: dict[str, Any]) -> None:
    agg: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0, 0, 0.0, 0.0, 0])
    # A joint run is scored as the run scores it (mstar.tasks.joint): the mean over suites of each
    # suite's mean, never the probes pooled (which would let the suite with more probes decide alone).
    joint = _is_joint(cfg)
    per_suite: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for pid, split, ep, _cat, s, n, probes, tokens, lat in data["cells"]:
        a = agg[(pid, split)]
        a[0] += s or 0.0
        a[1] += n
        a[2] += probes
        a[3] += tokens or 0
        a[4] += lat or 0.0
        if joint:
            g = per_suite[(pid, split)][group_of(ep)]
            g[0] += s or 0.0
            g[1] += n
    eps: dict[tuple[str, str], int] = defaultdict(int)
    failed: dict[str, list[str]] = defaultdict(list)
    wall: dict[str, float] = defaultdict(float)
    for (pid, split, _ep), e in data["episodes"].items():
        eps[(pid, split)] += 1
        wall[pid] += float(e.get("wall_s") or 0.0)
        if e.get("failure"):
            failed[pid].append(f"{_ep} ({split}): {e['failure']}: {(e.get('detail') or '')[:300]}")
    by_id = {p["id"]: p for p in programs}
    n_train = len(data["splits"].get("train", []))
    for p in programs:
        p["scores"], p["episodes_done"], p["suite_scores"] = {}, {}, {}
        for split in ("train", "val", "test"):
            a = agg.get((p["id"], split))
            if a and a[1]:
                p["scores"][split] = a[0] / a[1]
            if joint and (p["id"], split) in per_suite:
                suites = {k: v[0] / v[1] for k, v in sorted(per_suite[(p["id"], split)].items()) if v[1]}
                p["suite_scores"][split] = suites
                if suites:
                    p["scores"][split] = sum(suites.values()) / len(suites)
            if a:
                p["episodes_done"][split] = eps[(p["id"], split)]
        a = agg.get((p["id"], "train"))
        p["context_tokens"] = a[3] / a[2] if a and a[2] else None
        p["read_ms"] = a[4] / a[2] if a and a[2] else None
        p["train_full"] = bool(n_train) and p["episodes_done"].get("train", 0) >= n_train
        p["eval_wall_s"] = round(wall[p["id"]], 3)
        p["episode_failures"] = failed.get(p["id"], [])[:5]
        p["diagnoses"] = data["diag_counts"].get(p["id"], {})
        p["diagnosis_examples"] = data["diag_examples"].get(p["id"], [])
        parents = [by_id[q] for q in p["parents"] if q in by_id]
        # What the operator was shown: a sample of the parents' diagnosed failures on train.
        p["answered"] = {q["id"]: data["diag_counts"].get(q["id"], {}) for q in parents}
        p["diffs"] = {q["id"]: _diff(q["source"], p["source"], q["name"], p["name"], (q["id"], p["id"]))
                      for q in parents}


_DIFFS: dict[tuple[str, str], str] = {}  # program ids hash their source: a pair's diff never changes


def _diff(a: str, b: str, name_a: str, name_b: str, key: tuple[str, str] | None = None) -> str:
    if key is not None and key in _DIFFS:
        return _DIFFS[key]
    d = _unified(a, b, name_a, name_b)
    if key is not None:
        if len(_DIFFS) > 20_000:
            _DIFFS.clear()
        _DIFFS[key] = d
    return d


def _unified(a: str, b: str, name_a: str, name_b: str) -> str:
    return "".join(difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                        fromfile=name_a, tofile=name_b, n=3))


def _best_so_far(events: list[dict[str, Any]]) -> str | None:
    for e in reversed(events):
        if e["kind"] in ("generation", "best") and isinstance(e["payload"], dict):
            pid = e["payload"].get("best_id") or e["payload"].get("program")
            if pid:
                return pid
    return None


def _generations(events: list[dict[str, Any]], programs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best and median train score per island at the end of each generation (0: the seeds)."""
    score = {p["id"]: p["scores"].get("train") for p in programs if p["train_full"]}
    seeds = [p["id"] for p in programs if p["operator"] == "seed"]
    out = []
    gens = [e["payload"] for e in events if e["kind"] == "generation" and isinstance(e["payload"], dict)]
    n_islands = max([len(g.get("islands") or []) for g in gens] + [1])
    if any(e["kind"] == "seeds" for e in events):
        out.append(_gen_row(0, [seeds] * n_islands, score, None))
    for g in gens:
        out.append(_gen_row(int(g.get("generation", 0)), g.get("islands") or [], score, g))
    return out


def _gen_row(g: int, islands: list[list[str]], score: dict[str, float | None], ev: dict[str, Any] | None) -> dict[str, Any]:
    rows = []
    for members in islands:
        vals = [score[m] for m in members if score.get(m) is not None]
        rows.append({"best": max(vals) if vals else None, "median": statistics.median(vals) if vals else None,
                     "size": len(members)})
    allv = [score[m] for ms in islands for m in ms if score.get(m) is not None]
    return {"generation": g, "islands": rows,
            "best": (ev or {}).get("best", max(allv) if allv else None),
            "median": (ev or {}).get("median", statistics.median(allv) if allv else None),
            "outcomes": (ev or {}).get("outcomes", {})}


def _final_table(final: dict[str, Any] | None, programs: list[dict[str, Any]], best_id: str | None) -> dict[str, Any]:
    """Every program scored on val (the final step's candidates), with train/val/test; the pick first."""
    rows = []
    for p in programs:
        if "val" in p["scores"] or "test" in p["scores"] or p["id"] == best_id:
            rows.append({"id": p["id"], "name": p["name"], "operator": p["operator"], "seed": p["operator"] == "seed",
                         "picked": p["id"] == best_id and final is not None, **{s: p["scores"].get(s)
                                                                               for s in ("train", "val", "test")},
                         "suites": p.get("suite_scores", {})})
    rows.sort(key=lambda r: (not r["picked"], r["seed"], -(r["val"] if r["val"] is not None else -1)))
    return {"done": final is not None, "rows": rows, "summary": final}


def _heatmap(cells: list[tuple], programs: list[dict[str, Any]], best_id: str | None,
             joint: bool = False) -> dict[str, Any]:
    """Winner and seeds: score per (split, category) and per (split, episode). In a joint run a category
    is a suite's own ("locomo/temporal"): suites name categories alike ("default") that mean different
    things, and pooled they would mix probes the run never pools."""
    keep = [p for p in programs if p["id"] == best_id] + [p for p in programs if p["operator"] == "seed"
                                                          and p["id"] != best_id]
    ids = {p["id"] for p in keep}
    cat: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0])
    ep: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0])
    for pid, split, episode, category, s, n, *_ in cells:
        if pid in ids and n:
            col = f"{group_of(episode)}{SEP}{category}" if joint else category
            for key, acc in (((pid, split, col), cat), ((pid, split, episode), ep)):
                acc[key][0] += s or 0.0
                acc[key][1] += n
    def table(acc: dict) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (pid, split, col), (s, n) in acc.items():
            out.setdefault(split, {}).setdefault(pid, {})[col] = round(s / n, 4)
        return out
    return {"rows": [{"id": p["id"], "name": ("winner " if p["id"] == best_id else "seed ") + p["name"]} for p in keep],
            "category": table(cat), "episode": table(ep)}


def _operators(data: dict[str, Any], programs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per operator: proposals and outcomes, LLM tokens and USD, proposing and evaluating wall time.

    Proposing time is not stored as such: proposals are made one after another, so a proposal's time is
    the gap since the previous one (or since the previous generation closed); gaps across a resume are
    dropped rather than counted."""
    ops: dict[str, dict[str, Any]] = defaultdict(lambda: {"proposals": 0, "accepted": 0, "rejected": 0, "failed": 0,
                                                         "pending": 0, "llm_calls": 0, "tokens": 0, "usd": 0.0,
                                                         "propose_s": 0.0, "eval_s": 0.0})
    gen_end = {0: None}
    for e in data["events"]:
        if e["kind"] == "seeds":
            gen_end[0] = e["ts"]
        elif e["kind"] == "generation" and isinstance(e["payload"], dict):
            gen_end[int(e["payload"].get("generation", 0))] = e["ts"]
    sessions = sorted(e["ts"] for e in data["events"] if e["kind"] == "session")
    prev_gen, prev_t = None, None
    for p in data["proposals"]:
        o = ops[p["operator"]]
        o["proposals"] += 1
        out = p["outcome"]
        o[{"accepted": "accepted", "failed": "failed", "pending": "pending"}.get(out, "rejected")] += 1
        start = prev_t if prev_gen == p["generation"] else gen_end.get(p["generation"] - 1)
        if start is not None and p["created"] and not any(start < s < p["created"] for s in sessions):
            o["propose_s"] += max(0.0, p["created"] - start)
        prev_gen, prev_t = p["generation"], p["created"]
    for p in programs:
        if p["operator"] != "seed":
            ops[p["operator"]]["eval_s"] += p["eval_wall_s"]
    other = {"llm_calls": 0, "tokens": 0, "usd": 0.0}
    for row in data["llm"]:
        purpose = str(row["purpose"])
        target = ops[purpose.split(":", 1)[1]] if purpose.startswith("operator:") else other
        target["llm_calls"] += row["calls"]
        target["tokens"] += row["tokens"] or 0
        target["usd"] += row["cost"] or 0.0
    rows = [{"operator": k, **{kk: (round(vv, 3) if isinstance(vv, float) else vv) for kk, vv in v.items()}}
            for k, v in sorted(ops.items())]
    seeds_eval = sum(p["eval_wall_s"] for p in programs if p["operator"] == "seed")
    rows.append({"operator": "(seeds, harness LLM calls)", "proposals": 0, "accepted": 0, "rejected": 0, "failed": 0,
                 "pending": 0,
                 "llm_calls": other["llm_calls"], "tokens": other["tokens"], "usd": round(other["usd"], 6),
                 "propose_s": 0.0, "eval_s": round(seeds_eval, 3)})
    return rows


INCIDENTS_SHOWN = 50  # a broken diagnosis repeats on every episode: the page lists the first ones and counts the rest


def _incidents(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the search did to its populations (migrations, island resets) and what went wrong without
    stopping it (diagnosis failures), in order, with a count per kind."""
    rows: list[dict[str, Any]] = []
    counts: dict[str, int] = defaultdict(int)
    for e in events:
        kind, p = e["kind"], e["payload"] if isinstance(e["payload"], dict) else {}
        if kind == "migration":
            text = f"{p.get('program')} from island {p.get('from')} to island {p.get('to')}"
        elif kind == "island_reset":
            text = (f"island {p.get('island')} re-seeded with {', '.join(map(str, p.get('seeded_with') or []))}; "
                    f"dropped {len(p.get('dropped') or [])} program(s)")
        elif kind == "diagnosis_error":
            text = f"{p.get('program')}: {str(p.get('error', ''))[:500]}"
        else:
            continue
        counts[kind] += 1
        if counts[kind] <= INCIDENTS_SHOWN:
            rows.append({"kind": kind, "ts": e["ts"], "generation": p.get("generation"), "text": text})
    return {"rows": rows, "counts": dict(counts)}


def _pareto(programs: list[dict[str, Any]]) -> dict[str, Any]:
    pts = [p for p in programs if p["train_full"] and p["scores"].get("train") is not None
           and p["context_tokens"] is not None]
    front = []
    for p in sorted(pts, key=lambda q: (q["context_tokens"], -q["scores"]["train"])):
        if not front or p["scores"]["train"] > front[-1]["scores"]["train"] + 1e-12:
            front.append(p)
    return {"front": [p["id"] for p in front]}


def describe_error(e: Exception) -> str:
    return str(e) if isinstance(e, RunReadError) else f"{type(e).__name__}: {e}"
