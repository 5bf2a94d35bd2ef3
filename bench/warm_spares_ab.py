"""A/B of the warm spares for one program: ``spares=0`` (what ``mstar eval HARNESS`` uses) against the
default ``spares=2``, in this process, with the prewarm the CLI does, interleaved pairs.

    python bench/warm_spares_ab.py --data ../shared/data/locomo10.json --sandbox docker --pairs 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MSTAR_DATA", "")) or None)
    ap.add_argument("--sandbox", default="docker", choices=["docker", "process"])
    ap.add_argument("--harness", default="bm25")
    ap.add_argument("--pairs", type=int, default=8)
    args = ap.parse_args(argv)
    if args.data is None or not args.data.exists():
        ap.error(f"--data: {args.data} not found (give the LoCoMo json, or set MSTAR_DATA)")

    from mstar.evaluate import EvalConfig, evaluate
    from mstar.harness.knobs import defaults
    from mstar.harness.loader import load_program
    from mstar.sandbox.base import SessionLimits
    from mstar.sandbox.registry import get_backend
    from mstar.tasks.registry import get_task
    from mstar.toolkit import Toolkit

    program = load_program(args.harness)
    episodes = get_task("locomo", data=args.data).episodes("test")
    labels = {"mstar.run": f"bench-spares-{os.getpid()}"}

    def once(spares: int) -> float:
        t0 = time.perf_counter()
        backend = get_backend(args.sandbox, spares=spares)
        backend.prewarm(program, SessionLimits(), labels)
        evaluate(program, episodes, backend, Toolkit(), defaults(program.knob_specs),
                 EvalConfig(budget=1024, collect_dump=False), labels=labels)
        backend.close()
        return time.perf_counter() - t0

    once(2)  # warm-up: imports, page cache, the engine's image cache
    times: dict[int, list[float]] = {0: [], 2: []}
    for i in range(args.pairs):
        for spares in ((0, 2) if i % 2 else (2, 0)):
            times[spares].append(once(spares))
    paired = statistics.median(a / b for a, b in zip(times[0], times[2], strict=True))
    print(f"{args.sandbox}: spares=0 median {statistics.median(times[0]):.3f} s, spares=2 median "
          f"{statistics.median(times[2]):.3f} s, paired ratio {paired:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
