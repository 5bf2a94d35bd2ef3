"""Evidence recall of every adversarial harness (tests/adversarial/) next to bm25, on one task split.

With ``--old-evidence FILE`` (an earlier ``mstar/scoring/evidence.py``, e.g. from
``git show 52c9b9f:mstar/scoring/evidence.py > /tmp/old_evidence.py``) each read is also scored by that
rule, for the before/after table in docs/SCORING.md. Harnesses run in this process (inline).

    python bench/adversarial_table.py --task locomo --data ../shared/data/locomo10.json --split test
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="locomo")
    ap.add_argument("--data", default=os.environ.get("MSTAR_DATA"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--old-evidence", type=Path, default=None)
    args = ap.parse_args(argv)

    import mstar.evaluate as ev
    from mstar.evaluate import EvalConfig, evaluate
    from mstar.harness.loader import load_program
    from mstar.sandbox.inline import InlineBackend
    from mstar.tasks.registry import get_task
    from mstar.toolkit import Toolkit

    old = None
    if args.old_evidence:
        spec = importlib.util.spec_from_file_location("old_evidence", args.old_evidence)
        old = importlib.util.module_from_spec(spec)
        sys.modules["old_evidence"] = old  # dataclasses look their module up by name
        spec.loader.exec_module(old)
    episodes = get_task(args.task, data=args.data if args.task != "synthetic" else None).episodes(args.split)
    old_scores: list[float] = []
    real = ev.score_read

    def scoring(probe, result, index, budget, read_ms=0.0):
        ps = real(probe, result, index, budget, read_ms)
        if old is not None and ps.evidence_recall is not None:
            oi = getattr(index, "_old_index", None)  # kept on the episode's index: ids of dead objects are reused
            if oi is None:
                oi = index._old_index = old.EventIndex.of(list(index.events.values()))
            old_scores.append(old.score_read(probe, result, oi, budget, read_ms).evidence_recall)
        return ps

    ev.score_read = scoring
    specs = ["bm25", "bm25_neighbors", *sorted(str(p) for p in (ROOT / "tests" / "adversarial").glob("*.py"))]
    print(f"task={args.task} split={args.split} budget=1024 episodes={len(episodes)}")
    print("| harness | old rule | span rule |" if old else "| harness | span rule |")
    print("| --- | ---: | ---: |" if old else "| --- | ---: |")
    for spec in specs:
        old_scores.clear()
        results = evaluate(load_program(spec), episodes, InlineBackend(), Toolkit(), config=EvalConfig())
        rec = [p.evidence_recall for r in results for p in r.probes if p.evidence_recall is not None]
        name = Path(spec).stem
        new = sum(rec) / len(rec)
        if old:
            print(f"| {name} | {sum(old_scores) / max(1, len(old_scores)):.3f} | {new:.3f} |", flush=True)
        else:
            print(f"| {name} | {new:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
