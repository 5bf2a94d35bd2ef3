"""`tune`'s modes from the same parents: how often a proposal gains, and whether the gain holds off the minibatch.

For each parent seed and each of N operator seeds, ``tune`` proposes a child with each ``tune_mode``
(``tpe``, the default: TPE over every knob; ``local``: hill-climbing, one to three knobs per trial;
``near``: TPE whose start-up trials are local steps), all scored on the same minibatch (by default one
train conversation, as a run's default; ``--minibatch-episodes``) with the same number of trials. Each
child is then scored on the train episodes outside the minibatch and on val. Reported per mode:
proposals that produced a child (the rest are ``no_gain``), mean minibatch gain, mean gain over the
parent outside the minibatch and on val, and children better than their parent there. Inline sandbox,
hashing embedder: the harness's own speed.

    python bench/tune_modes.py --data ../shared/data/locomo10.json --parents lexical_plus,bm25_neighbors --n 6 \
        --modes tpe,local,near --minibatch-episodes 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from mstar.embedders import HashingEmbedder
from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.evolve.execution.cascade import choose_episodes
from mstar.evolve.operators.base import OperatorContext, OperatorFailed, ParentView
from mstar.evolve.operators.tune import TuneOperator
from mstar.harness.knobs import defaults
from mstar.harness.loader import from_source, load_program
from mstar.sandbox.inline import InlineBackend
from mstar.tasks.registry import get_task
from mstar.toolkit import Toolkit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="locomo")
    ap.add_argument("--data", default=None)
    ap.add_argument("--parents", default="lexical_plus,bm25_neighbors")
    ap.add_argument("--n", type=int, default=6, help="operator seeds per parent and mode")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--modes", default="tpe,local", help="comma-separated tune_mode values")
    ap.add_argument("--minibatch-episodes", type=int, default=1, help="as evolve's --minibatch-episodes")
    ns = ap.parse_args()
    suite = get_task(ns.task, data=ns.data)
    train, val = suite.episodes("train"), suite.episodes("val")
    by_id = {e.id: e for e in train + val}
    _, mb = choose_episodes([e.id for e in train], 0, 1, ns.minibatch_episodes)
    # The gain that matters is the one outside the minibatch the trials were judged on.
    held = [e.id for e in train if e.id not in mb]
    vids = [e.id for e in val]
    toolkit, backend, cfg = Toolkit(embed=HashingEmbedder(), embedder_name="hashing"), InlineBackend(), EvalConfig()
    cache: dict[tuple, float] = {}

    def score(source: str, knobs: dict[str, Any], ids: list[str]) -> float:
        key = (source, tuple(sorted((k, repr(v)) for k, v in knobs.items())), tuple(ids))
        if key not in cache:
            prog = from_source(source, name="t")
            vals = [p.evidence_recall for i in ids for p in
                    evaluate_episode(prog, by_id[i], backend, toolkit, knobs, cfg).probes if p.evidence_recall is not None]
            cache[key] = sum(vals) / len(vals)
        return cache[key]

    rows: dict[str, list[dict[str, float]]] = {m: [] for m in ns.modes.split(",")}
    t0 = time.perf_counter()
    for name in ns.parents.split(","):
        prog = load_program(name)
        knobs = defaults(prog.knob_specs)
        base_mb, base_held, base_val = (score(prog.source, knobs, ids) for ids in (mb, held, vids))
        for mode in rows:
            for s in range(ns.n):
                ctx = OperatorContext(rng=random.Random(f"{name}:{s}"), seeds={}, options={"trials": ns.trials,
                                      "tune_mode": mode}, score_minibatch=lambda src, k: score(src, k, mb))
                try:
                    child = TuneOperator().propose([ParentView(id=name, name=name, source=prog.source, knobs=knobs)], ctx)
                except OperatorFailed:
                    rows[mode].append({"made": 0, "mb_gain": 0.0, "held_gain": 0.0, "val_gain": 0.0})
                    continue
                ck = child.knobs or {}
                rows[mode].append({"made": 1, "mb_gain": score(child.source, ck, mb) - base_mb,
                                   "held_gain": score(child.source, ck, held) - base_held if held else 0.0,
                                   "val_gain": score(child.source, ck, vids) - base_val})
    print(f"{ns.task}, parents {ns.parents}, {ns.n} operator seeds each, {ns.trials} trials, minibatch {mb}, "
          f"held-out train {held}; {time.perf_counter() - t0:.0f} s")
    print("| mode | children made | mean minibatch gain | mean held-out train gain | mean val gain | "
          "better on held-out train | better on val |")
    print("|---|---|---|---|---|---|---|")
    for mode, rs in rows.items():
        made = [r for r in rs if r["made"]]

        def mean(k: str, made: list = made) -> float:
            return statistics.mean(r[k] for r in made) if made else 0.0

        print(f"| {mode} | {len(made)}/{len(rs)} | {statistics.mean(r['mb_gain'] for r in rs):+.4f} | "
              f"{mean('held_gain'):+.4f} | {mean('val_gain'):+.4f} | "
              f"{sum(r['held_gain'] > 1e-9 for r in made)}/{len(rs)} | {sum(r['val_gain'] > 1e-9 for r in made)}/{len(rs)} |")


if __name__ == "__main__":
    main()
