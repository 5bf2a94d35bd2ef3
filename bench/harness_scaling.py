"""Per-turn cost of an exported memory at 1k / 10k / 100k stored events (agents interleave writes and reads).

For each harness (a seed name, a harness file or a run folder) the module ``mstar export`` would write
is assembled, a SQLite store is preloaded with N synthetic events for one user (one bulk transaction,
the same rows ``write`` appends), and a fresh child process measures, through the exported module only:
- cold start: ``open_memory`` replaying the whole log, then the first read; and again from the
  snapshot the harness offers (``state()`` / ``save_state()``), taken after the turns;
- turn: write the user's message (durable: committed before it returns), then read for the next
  question -- p50 / p95 over ``--turns`` turns (fewer when a turn is slow: ``--cell-seconds``);
- write throughput: durable writes per second, alone;
- RSS: the child's peak resident memory (VmHWM, before the snapshot cold start).

Usage: python bench/harness_scaling.py [--harness bm25 --harness runs/x] [--sizes 1000,10000,100000]
Prints a markdown table. Events and questions come from the built-in synthetic suite (seeded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def events_and_questions(n: int, extra: int) -> tuple[list[dict], list[str]]:
    from mstar.tasks.synthetic import SyntheticTask

    ep = SyntheticTask(seed=0, episodes=1, events=n + extra).episodes("all")[0]
    evs = [e.model_dump() for e in ep.events]
    return evs, [p.question for p in ep.probes] or ["what happened?"]


def preload(module_file: Path, store: Path, events: list[dict]) -> None:
    """The rows ``PersistentMemory.write`` would append, in one transaction (a fast way to fill a store)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_memory_preload", module_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    log = mod._MxSqliteLog(store)
    rows = [("bench", "write", e["id"], json.dumps(mod._mx_event(e, {}), default=str)) for e in events]
    db = log._db
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO mstar_events (user_id, kind, event_id, body) VALUES (?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    db.close()


CHILD = r"""
import importlib.util, json, sys, time
module_file, store, extra_file, turns, writes, cell_seconds = sys.argv[1:7]
turns, writes, cell_seconds = int(turns), int(writes), float(cell_seconds)
spec = importlib.util.spec_from_file_location("bench_memory", module_file)
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
extra = json.load(open(extra_file))
evs, qs = extra["events"], extra["questions"]
t0 = time.perf_counter()
mem = m.open_memory(store, "bench", toolkit=m.DefaultToolkit(embed=m._MxHashingEmbedder()))
t_open = time.perf_counter() - t0
mem.read(qs[0])
t_first = time.perf_counter() - t0
lat, start, i = [], time.perf_counter(), 0
while i < min(turns, len(evs)) and (i < 5 or time.perf_counter() - start < cell_seconds):
    t = time.perf_counter()
    mem.write(evs[i])
    mem.read(qs[i % len(qs)])
    lat.append(time.perf_counter() - t)
    i += 1
ws = evs[i:i + writes]
t = time.perf_counter()
for e in ws:
    mem.write(e)
wps = len(ws) / (time.perf_counter() - t) if ws else float("nan")
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] * 1000
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report its parent's peak.
rss = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")) / 1024
snap_s = None
if mem.snapshot():  # what a long-running agent leaves behind; then a second cold start uses it
    t0 = time.perf_counter()
    again = m.PersistentMemory(m._MxSqliteLog(store), "bench", toolkit=mem.toolkit)
    again.read(qs[0])
    snap_s = time.perf_counter() - t0
print(json.dumps({"open_s": t_open, "cold_s": t_first, "snap_s": snap_s, "p50_ms": pct(0.5), "p95_ms": pct(0.95),
                  "turns": len(lat), "writes_per_s": wps, "rss_mb": rss}))
"""


def export_module(spec: str, out: Path) -> Path:
    from mstar.export.assemble import assemble
    from mstar.export.source import check

    out.write_text(assemble(check(spec, sandbox="process"), module_name=out.stem))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--harness", action="append", help="seed name, harness file or run folder (repeatable)")
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--cell-seconds", type=float, default=60.0, help="stop measuring turns of one cell after this")
    args = ap.parse_args()
    harnesses = args.harness or ["bm25"]
    sizes = [int(s) for s in args.sizes.split(",")]
    extra_n = args.turns + args.writes
    print("| harness | stored events | cold start, replay: open (s) | open + first read (s) | cold start from snapshot: open + first read (s) |"
          " turn p50 (ms) | turn p95 (ms) | turns | durable writes/s | RSS (MB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="mstar-bench-") as tmp:
        tmpd = Path(tmp)
        for h_i, h in enumerate(harnesses):
            module = export_module(h, tmpd / f"bench_mem_{h_i}.py")
            label = Path(h).name if "/" in h else h
            for n in sizes:
                evs, qs = events_and_questions(n, extra_n)
                store = tmpd / f"s{h_i}_{n}.db"
                preload(module, store, evs[:n])
                extra = tmpd / "extra.json"
                extra.write_text(json.dumps({"events": evs[n:], "questions": qs}))
                r = subprocess.run([sys.executable, "-c", CHILD, str(module), str(store), str(extra), str(args.turns),
                                    str(args.writes), str(args.cell_seconds)], capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"| {label} | {n:,} | failed: {r.stderr.strip().splitlines()[-1]} |", flush=True)
                    continue
                d = json.loads(r.stdout.strip().splitlines()[-1])
                snap = "-" if d["snap_s"] is None else f"{d['snap_s']:.2f}"
                print(f"| {label} | {n:,} | {d['open_s']:.2f} | {d['cold_s']:.2f} | {snap} | {d['p50_ms']:.1f} | {d['p95_ms']:.1f} |"
                      f" {d['turns']} | {d['writes_per_s']:.0f} | {d['rss_mb']:.0f} |", flush=True)
                store.unlink()


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n({time.perf_counter() - t0:.0f} s)")
