"""Run by test_seeds_deterministic.py in a fresh interpreter (its own PYTHONHASHSEED): every offline seed's
per-probe result on a few episodes, as JSON on stdout."""

from __future__ import annotations

import json
import sys

from mstar.embedders import HashingEmbedder
from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.harness.loader import load_program, seed_names
from mstar.sandbox.inline import InlineBackend
from mstar.tasks.registry import get_task
from mstar.toolkit import Toolkit


def main() -> None:
    task = get_task("synthetic", episodes=3, events=160, probes=12)
    episodes = task.episodes("all")
    extra = sys.argv[1:]  # more suites: "locomo:PATH" (first conversation only)
    for spec in extra:
        name, _, path = spec.partition(":")
        episodes += get_task(name, data=path).episodes("all")[:1]
    toolkit = Toolkit(embed=HashingEmbedder(), embedder_name="hashing")
    out: dict[str, list] = {}
    for name in seed_names():
        prog = load_program(name)
        if prog.needs_llm:
            continue
        rows = []
        for ep in episodes:
            res = evaluate_episode(prog, ep, InlineBackend(), toolkit, config=EvalConfig(budget=256))
            rows += [[p.probe_id, p.listed, p.evidence_recall] for p in res.probes]
        out[name] = rows
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
