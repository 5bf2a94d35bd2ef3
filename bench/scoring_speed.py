"""Host CPU of scoring: the span rule against an earlier rule, on the same recorded reads.

Records every read of one harness (in process) on a task split, then scores all of them with both rules,
alternating, ``--rounds`` times; prints the median per-read time of each and their ratio.

    git show 52c9b9f:mstar/scoring/evidence.py > /tmp/old_evidence.py
    python bench/scoring_speed.py --data ../shared/data/locomo10.json --old-evidence /tmp/old_evidence.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="locomo")
    ap.add_argument("--data", default=os.environ.get("MSTAR_DATA"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--harness", default="bm25_neighbors")
    ap.add_argument("--old-evidence", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    import mstar.evaluate as ev
    from mstar.evaluate import EvalConfig, evaluate
    from mstar.harness.loader import load_program
    from mstar.sandbox.inline import InlineBackend
    from mstar.scoring import evidence as new
    from mstar.tasks.registry import get_task
    from mstar.toolkit import Toolkit

    spec = importlib.util.spec_from_file_location("old_evidence", args.old_evidence)
    old = importlib.util.module_from_spec(spec)
    sys.modules["old_evidence"] = old
    spec.loader.exec_module(old)

    episodes = get_task(args.task, data=args.data if args.task != "synthetic" else None).episodes(args.split)
    reads: list[tuple] = []
    real = ev.score_read

    def record(probe, result, index, budget, read_ms=0.0):
        reads.append((probe, result, index, budget))  # the index objects stay alive: their ids stay unique
        return real(probe, result, index, budget, read_ms)

    ev.score_read = record
    evaluate(load_program(args.harness), episodes, InlineBackend(), Toolkit(), config=EvalConfig())
    ev.score_read = real

    def run(mod) -> float:
        idx = {}
        t0 = time.perf_counter()
        for probe, result, index, budget in reads:
            key = id(index)
            if key not in idx:
                idx[key] = mod.EventIndex.of(list(index.events.values()))
            mod.score_read(probe, result, idx[key], budget)
        return (time.perf_counter() - t0) / len(reads) * 1e3

    t_old, t_new = [], []
    for _ in range(args.rounds):
        t_old.append(run(old))
        t_new.append(run(new))
    mo, mn = statistics.median(t_old), statistics.median(t_new)
    print(f"{args.harness} on {args.task}/{args.split}: {len(reads)} reads; old rule {mo:.3f} ms/read, "
          f"span rule {mn:.3f} ms/read, ratio {mn / mo:.2f}x (median of {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
