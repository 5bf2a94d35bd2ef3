"""What the seed cache saves: the same `mstar evolve` run twice in one runs directory, timed.

The first run scores its seeds and fills ``<runs-dir>/.cache``; the second reuses them. Reported per run:
wall time, the seed phase (session start to the ``seeds`` event) and the final step, plus whether the two
runs ended with the same pick and the same test score (they must). A third run with ``--no-seed-cache``
is the control measured beside them, so the ratio is taken inside one invocation on a shared machine.

    python bench/seed_cache.py --task locomo --data ../shared/data/locomo10.json --generations 1
    python bench/seed_cache.py                  # the synthetic suite, default sizes
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(runs: Path, run_id: str, args: list[str], *extra: str) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "mstar.cli.main", "evolve", *args, "--runs-dir", str(runs),
                        "--run-id", run_id, "--json", "--quiet", *extra], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{run_id}: mstar evolve failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout)
    c = sqlite3.connect(runs / run_id / "run.db")
    ts = dict(c.execute("SELECT kind, MIN(ts) FROM events WHERE kind IN ('session', 'seeds', 'final') GROUP BY kind"))
    c.close()
    return {"run": run_id, "wall_s": round(wall, 1), "seed_phase_s": round(ts["seeds"] - ts["session"], 1),
            "pick": out["best"]["name"], "test": out["best"]["test"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="synthetic")
    ap.add_argument("--data", default=None)
    ap.add_argument("--generations", type=int, default=1)
    ap.add_argument("--seeds", default=None, help="--seeds of the runs (default: the whole library)")
    ns = ap.parse_args()
    args = ["--task", ns.task, "--generations", str(ns.generations), "--executor", "inline", "--sandbox", "inline",
            "--embedder", "hashing", "--seed", "0"]
    if ns.data:
        args += ["--data", ns.data]
    if ns.seeds:
        args += ["--seeds", ns.seeds]
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        rows = [run(runs, "first", args), run(runs, "second", args), run(runs, "control", args, "--no-seed-cache")]
    print("| run | wall (s) | seed phase (s) | pick | test |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['wall_s']} | {r['seed_phase_s']} | {r['pick']} | {r['test']:.4f} |")
    same = rows[0]["pick"] == rows[1]["pick"] and abs(rows[0]["test"] - rows[1]["test"]) < 1e-12
    print(f"\nsecond run, seed phase: {rows[1]['seed_phase_s'] / max(rows[2]['seed_phase_s'], 1e-9):.3f} x the "
          f"control's; same pick and test score as the first: {same}")
    if not same:
        raise SystemExit("the cached run differs from the first: a bug")


if __name__ == "__main__":
    main()
