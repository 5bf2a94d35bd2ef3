"""Ray executor scaling: evaluations per minute with 1 and 2 sandbox workers on this machine.

The jobs are real, CPU-bound harness evaluations: one seed (default ``bm25_neighbors``) on LoCoMo
conversations (every probe read at the default budget), in the ``process`` sandbox (or ``docker``).
Each worker count gets its own fresh local Ray instance; a warm-up round (one job per worker, not
timed) pays the workers' imports and the first sandbox start, as a long run would only once.

Measured, per worker count w:
- rate: evaluations per minute over the timed batch (wall clock of the whole ``map``);
- t_eval: mean time of one evaluation inside the worker (``EpisodeResult.wall_s``);
- t_sched: per-evaluation overhead a slot spends not evaluating: w * wall / n - t_eval
  (queueing in Ray, shipping the job and result, starting the sandbox session);
- t_driver: driver time per result (``ray.get`` of the result + the broker's usage record).
- cores busy: machine-wide CPU time (all processes: driver, raylet, Ray workers scoring on the host,
  sandbox runners, their warm spares) over the batch, divided by its wall clock, from /proc/stat; and
  cpu s/eval, that CPU time per evaluation. On a machine with C cores the speedup over one worker can
  never exceed C / (cores busy with one worker): the ceiling column.
Model of N nodes with w slots each: rate(N) = min(N * w / (t_eval + t_sched), 1 / t_driver) per second.

Usage: python bench/executor_scaling.py --data ../shared/data/locomo10.json [--jobs 12] [--sandbox process]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any


def busy_seconds() -> float:
    """CPU seconds spent not idle, summed over all cores, since boot (/proc/stat; 0 where absent)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run(workers: int, episodes: dict[str, Any], ids: list[str], source: str, knobs: dict[str, Any],
        sandbox: str) -> dict[str, float]:
    from mstar.evaluate import EvalConfig
    from mstar.evolve.execution.executor import EvalJob
    from mstar.evolve.execution.ray_executor import RayExecutor
    from mstar.toolkit import Toolkit

    ex = RayExecutor(episodes, sandbox, Toolkit(), EvalConfig(budget=1024), workers=workers,
                     labels={"mstar.run": "bench-scaling"})
    try:
        warm = [EvalJob("warm", source, knobs, ids[i % len(ids)], "train") for i in range(workers)]
        list(ex.map(warm))
        jobs = [EvalJob("bench", source, knobs, e, "train") for e in ids]
        t_driver: list[float] = []
        evals: list[float] = []
        t0, b0 = time.perf_counter(), busy_seconds()
        it = ex.map(jobs)
        orig = ex._result

        def timed(ref: Any) -> Any:  # the driver's own work per result
            s = time.perf_counter()
            out = orig(ref)
            t_driver.append(time.perf_counter() - s)
            return out

        ex._result = timed  # type: ignore[method-assign]
        for jr in it:
            assert jr.result.failure is None, jr.result.failure
            evals.append(jr.result.wall_s)
        wall, busy = time.perf_counter() - t0, busy_seconds() - b0
    finally:
        ex.close()
    n = len(jobs)
    t_eval = statistics.mean(evals)
    return {"workers": workers, "n": n, "wall_s": wall, "per_min": 60 * n / wall, "t_eval_s": t_eval,
            "t_sched_s": max(0.0, workers * wall / n - t_eval), "t_driver_s": statistics.mean(t_driver),
            "cores_busy": busy / wall, "cpu_s_per_eval": busy / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("MSTAR_DATA", "../shared/data/locomo10.json"))
    ap.add_argument("--seed-program", default="bm25_neighbors")
    ap.add_argument("--jobs", type=int, default=12, help="timed evaluations per worker count")
    ap.add_argument("--sandbox", default="process", choices=["process", "docker"])
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from mstar.harness.knobs import defaults
    from mstar.harness.loader import load_program
    from mstar.tasks.registry import get_task

    eps = get_task("locomo", data=args.data).episodes("all")
    episodes = {e.id: e for e in eps}
    ids = [eps[i % len(eps)].id for i in range(args.jobs)]
    prog = load_program(args.seed_program)
    rows = [run(int(w), episodes, ids, prog.source, defaults(prog.knob_specs), args.sandbox)
            for w in args.workers.split(",")]
    base = rows[0]["per_min"]
    cores = os.cpu_count() or 1
    for r in rows:
        r["speedup"] = r["per_min"] / base
        r["ceiling"] = cores / rows[0]["cores_busy"] if rows[0]["cores_busy"] else float("nan")
    if args.json:
        print(json.dumps(rows, indent=2))
    print(f"{'workers':>7} {'evals':>5} {'wall s':>7} {'evals/min':>9} {'speedup':>7} {'t_eval s':>8} "
          f"{'t_sched s':>9} {'t_driver ms':>11} {'cores busy':>10} {'cpu s/eval':>10} {'ceiling':>7}",
          file=sys.stderr if args.json else sys.stdout)
    for r in rows:
        print(f"{r['workers']:>7} {r['n']:>5} {r['wall_s']:>7.1f} {r['per_min']:>9.1f} {r['speedup']:>7.2f} "
              f"{r['t_eval_s']:>8.3f} {r['t_sched_s']:>9.3f} {1000 * r['t_driver_s']:>11.1f} "
              f"{r['cores_busy']:>10.2f} {r['cpu_s_per_eval']:>10.3f} {r['ceiling']:>7.2f}",
              file=sys.stderr if args.json else sys.stdout)
    last = rows[-1]
    w = last["workers"]
    per_slot = 1 / (last["t_eval_s"] + last["t_sched_s"])
    cap = 1 / last["t_driver_s"] if last["t_driver_s"] > 0 else float("inf")
    print(f"model: rate(N nodes x {w} slots) = min(N*{w}*{60 * per_slot:.1f}, {60 * cap:.0f}) evals/min "
          f"(driver-bound beyond N = {cap / (w * per_slot):.0f} nodes)", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
