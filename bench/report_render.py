"""Benchmark: the report of a 500-program run — extraction, file size, render time in headless Chromium.

The store is built through the store API (RunStore.add_program / add_episode / put_proposal / event),
as the engine writes it: the seed library's real sources, children that edit a parent (a knob value or
a line of code, so each diff is small and each source differs), train evaluations of every program on
8 episodes x 40 probes (screen-only for the rejected), val and test for the final candidates and the
seeds, diagnoses on missed probes, generation events with island memberships, and an LLM ledger.

Render time: from navigation start to the moment the app has drawn every view (it sets
``window.__mstarRenderedAt``), reported as the median of --loads page loads in one browser.

    python bench/report_render.py --programs 500
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mstar.evolve.store.run_store import ProgramRecord, ProposalRecord, RunStore
from mstar.harness.loader import load_program, seed_names
from mstar.report.extract import _DIFFS, Cache, extract
from mstar.report.render import write_report

CATEGORIES = ["single-hop", "multi-hop", "temporal", "knowledge-update", "abstention"]
STAGES = ["not_stored", "not_retrieved", "cut_by_budget"]


def build(run_dir: Path, n_programs: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    store = RunStore(run_dir)
    seeds = [load_program(n) for n in seed_names()][:12]
    train = [f"syn-{i}" for i in range(8)]
    cfg = {"run_id": run_dir.name, "task": "synthetic", "budget": 1024, "metric": "evidence_recall", "islands": 2,
           "select": "1se", "children_per_gen": 10, "stops": {"generations": 50}}
    (run_dir / "config.json").write_text(json.dumps(cfg))
    store.event("session", {"resumed": False, "pid": -1})

    def evaluate(pid: str, split: str, episodes: list[str], quality: float) -> None:
        for ep in episodes:
            probes = []
            for q in range(40):
                r = max(0.0, min(1.0, quality + rng.uniform(-0.3, 0.3)))
                hit = round(r, 2)
                probes.append({"probe": f"{ep}:q{q}", "tokens": rng.randint(300, 1000), "latency": rng.uniform(1, 40),
                               "metrics": {"evidence_recall": hit, "ndcg@10": hit, "category": CATEGORIES[q % 5]},
                               "diagnosis": None if hit >= 1 else {
                                   "probe_id": f"{ep}:q{q}", "episode_id": ep, "category": CATEGORIES[q % 5],
                                   "question": f"Where did person {q} go in {ep}?", "stage": rng.choice(STAGES),
                                   "recall": hit, "evidence_texts": [f"[D1:{q}] some evidence text {q}"],
                                   "context_excerpt": "a few lines of the context the harness returned " * 3}})
            store.add_episode(pid, split, ep, {"failure": None, "wall_s": rng.uniform(0.5, 3), "probes": 40}, probes)

    progs: list[tuple[ProgramRecord, float]] = []
    with store.tx():
        for i, s in enumerate(seeds):
            rec = ProgramRecord(id=f"seed{i:012d}", name=s.name, source=s.source, status="seed", operator="seed",
                                created=0.0)
            store.add_program(rec)
            progs.append((rec, rng.uniform(0.2, 0.8)))
            evaluate(rec.id, "train", train, progs[-1][1])
    store.event("seeds", {r.name: q for r, q in progs})
    store.set_state("generation_done", 0)
    gen, slot = 1, 0
    islands: list[list[str]] = [[r.id for r, _ in progs], [r.id for r, _ in progs]]
    while len(progs) < n_programs:
        parent, pq = rng.choice(progs[-40:] if len(progs) > 40 else progs)
        op = rng.choice(["structural", "tune", "llm_reflect"])
        lines = parent.source.splitlines()
        k = rng.randrange(len(lines))
        lines.insert(k, f"    # {op} g{gen}.{slot}: adjusted {rng.random():.6f}")
        child = ProgramRecord(id=f"p{len(progs):015d}", name=f"g{gen}.{slot}-{op}", parents=[parent.id],
                              island=slot % 2, generation=gen, operator=op, source="\n".join(lines),
                              status="accepted", note=f"{op}: for not_retrieved (7/12): raised top_k; trial {slot}")
        q = max(0.0, min(1.0, pq + rng.uniform(-0.1, 0.12)))
        accepted = q >= pq - 0.02
        child.status = "accepted" if accepted else "rejected"
        prop = ProposalRecord(generation=gen, slot=slot, island=slot % 2, operator=op, parents=[parent.id],
                              program=child.id, outcome="accepted" if accepted else "rejected-cascade")
        store.put_proposal(prop, child)
        evaluate(child.id, "train", train if accepted else train[:1], q)
        if op == "llm_reflect":
            store.add_llm_call("operator:llm_reflect", "stub", 3000, 800, 0.004, False)
        progs.append((child, q))
        if accepted:
            islands[slot % 2] = (islands[slot % 2] + [child.id])[-10:]
        slot += 1
        if slot == 10:
            store.event("generation", {"generation": gen, "best": max(q for _, q in progs), "islands": islands,
                                       "median": statistics.median(q for _, q in progs), "outcomes": {}})
            store.set_state("generation_done", gen)
            gen, slot = gen + 1, 0
    ranked = sorted((p for p in progs if p[0].status in ("seed", "accepted")), key=lambda t: -t[1])
    finalists = [r for r, _ in ranked[:3]] + [r for r, _ in progs[:12]]
    for r in finalists:
        evaluate(r.id, "val", ["syn-v0", "syn-v1"], dict((p.id, q) for p, q in progs)[r.id])
        evaluate(r.id, "test", ["syn-t0", "syn-t1", "syn-t2"], dict((p.id, q) for p, q in progs)[r.id])
    best = ranked[0][0]
    final = {"best": {"id": best.id, "name": best.name}, "stop_reason": "generation limit (50)", "metric": "evidence_recall"}
    store.set_state("final", final)
    store.set_state("wall_s", 3600.0)
    store.close()
    return len(progs)


def render_times(path: Path, loads: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"]
    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("MSTAR_CHROMIUM", "/usr/bin/chromium"), args=args)
        for _ in range(loads):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.goto(path.as_uri())
            end = time.monotonic() + 60
            while not page.evaluate("window.__mstarRenderedAt") and time.monotonic() < end:
                time.sleep(0.05)
            ms = page.evaluate("window.__mstarRenderedAt")
            nodes = page.locator("#tree .node").count()
            if errors or not ms:
                sys.exit(f"render failed: {errors or 'timed out'}")
            out.append(ms / 1000)
            page.close()
        browser.close()
    return out, nodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--programs", type=int, default=500)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--plotly-baseline", action="store_true",
                    help="also time a page holding nothing but plotly.min.js (needs `pip install plotly`)")
    ap.add_argument("--keep", type=Path, help="build the store here (kept) instead of a temporary folder")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = a.keep or Path(tmp) / "bench-run"
        run_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        n = build(run_dir, a.programs)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        extract(run_dir)
        t_extract = time.perf_counter() - t0
        cache = Cache("")
        extract(run_dir, cache)
        store = RunStore(run_dir)  # one more finished episode, as a live run adds them
        pid = store.programs()[-1].id
        store.add_episode(pid, "val", "syn-v9", {"failure": None, "wall_s": 1.0},
                          [{"probe": f"syn-v9:q{q}", "metrics": {"evidence_recall": 0.5, "category": "temporal"},
                            "tokens": 500, "latency": 3.0} for q in range(40)])
        store.close()
        t0 = time.perf_counter()
        extract(run_dir, cache)
        t_warm = time.perf_counter() - t0
        _DIFFS.clear()  # the command runs cold: nothing cached from the extractions above
        t0 = time.perf_counter()
        out, _ = write_report(run_dir)
        t_write = time.perf_counter() - t0
        times, nodes = render_times(out, a.loads)
        db = (run_dir / "run.db").stat().st_size
        print(f"programs {n} (tree nodes drawn {nodes}) · run.db {db / 1e6:.1f} MB · built in {t_build:.1f} s")
        print(f"extract {t_extract:.2f} s (dashboard refresh after one more episode, warm cache: {t_warm:.2f} s) · mstar report's work, cold (extract + write) {t_write:.2f} s · "
              f"report.html {out.stat().st_size / 1e6:.2f} MB")
        print(f"render in headless Chromium (navigation start -> every view drawn), {a.loads} loads: "
              f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s")
        if a.plotly_baseline:
            from plotly.offline import get_plotlyjs

            js = get_plotlyjs()
            base = Path(tmp) / "plotly-only.html"
            base.write_text("<!DOCTYPE html><html><body><script>" + js + "</script><script>"
                            "window.__mstarRenderedAt=performance.now()</script><div id=tree></div></body></html>")
            bt, _ = render_times(base, a.loads)
            print(f"baseline: a page holding only plotly.min.js ({len(js) / 1e6:.1f} MB), {a.loads} loads: "
                  f"median {statistics.median(bt):.2f} s, min {min(bt):.2f} s, max {max(bt):.2f} s "
                  f"(ratio to the report: {statistics.median(bt) / statistics.median(times):.1f}x)")
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
