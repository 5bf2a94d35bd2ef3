"""Evidence recall under the span rule next to a plain count, for every offline seed.

The plain count credits an evidence event when its whole text (whitespace-normalised) appears verbatim
in the context, whatever the items say. On harnesses that show whole turns the two must agree within
0.01 (docs/SCORING.md prints this table). Seeds run in this process (inline: they are the repo's own
code) with the hashing embedder, budget 1,024.

    python bench/scoring_agreement.py --task locomo --data ../shared/data/locomo10.json --split test
    python bench/scoring_agreement.py --task synthetic --split test
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="locomo")
    ap.add_argument("--data", default=os.environ.get("MSTAR_DATA"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--budget", type=int, default=1024)
    ap.add_argument("--seeds", default="", help="comma-separated seed names (default: every offline seed)")
    args = ap.parse_args(argv)

    import mstar.evaluate as ev
    from mstar.evaluate import EvalConfig, evaluate
    from mstar.harness.loader import load_program, seed_names
    from mstar.sandbox.inline import InlineBackend
    from mstar.scoring.spans import normalise_ws
    from mstar.tasks.registry import get_task
    from mstar.toolkit import Toolkit

    episodes = get_task(args.task, data=args.data).episodes(args.split)

    plain: list[float] = []
    real_score = ev.score_read

    def scoring(probe, result, index, budget, read_ms=0.0):
        ps = real_score(probe, result, index, budget, read_ms)
        if ps.evidence_recall is not None and budget == args.budget:
            ctx = normalise_ws(result.context)
            ok = 0 if ps.error else sum(1 for e in probe.evidence if index.events[e].text.strip()
                                        and normalise_ws(index.events[e].text) in ctx)
            plain.append(ok / len(probe.evidence))
        return ps

    ev.score_read = scoring
    names = [s for s in (args.seeds.split(",") if args.seeds else seed_names()) if s]
    print(f"task={args.task} split={args.split} budget={args.budget} episodes={len(episodes)} "
          f"probes={sum(len(e.probes) for e in episodes)}")
    print("| seed | evidence recall (span rule) | plain verbatim count | difference |")
    print("| --- | ---: | ---: | ---: |")
    for name in names:
        program = load_program(name)
        if program.needs_llm:
            continue
        plain.clear()
        t0 = time.perf_counter()
        results = evaluate(program, episodes, InlineBackend(), Toolkit(), config=EvalConfig(budget=args.budget))
        rec = [p.evidence_recall for r in results for p in r.probes if p.evidence_recall is not None]
        new = sum(rec) / len(rec)
        old = sum(plain) / len(plain)
        print(f"| {name} | {new:.3f} | {old:.3f} | {new - old:+.3f} |  <!-- {time.perf_counter() - t0:.1f}s -->",
              flush=True)

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
