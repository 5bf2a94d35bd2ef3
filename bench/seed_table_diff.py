"""Compare two seed tables (`mstar eval --all-seeds ... --json` outputs) on every field except timings.

Usage: python bench/seed_table_diff.py BEFORE.json AFTER.json
Prints the number of differences and the first 30 (path, before, after). Used to show that a speed
change to the seeds left every score unchanged (docs/BENCHMARKS.md). Run both tables with the same
PYTHONHASHSEED: some seeds iterate over sets of words, so their ties depend on string hashing.
"""

from __future__ import annotations

import json
import sys

TIMING = ("_ms", "wall_s", "seconds", "elapsed", "duration")


def walk(a, b, path: str, diffs: list) -> int:
    """Append differences to ``diffs``; return how many leaf values were compared."""
    if isinstance(a, dict) and isinstance(b, dict):
        return sum(walk(a.get(k), b.get(k), f"{path}.{k}", diffs) for k in sorted(set(a) | set(b))
                   if not any(t in k for t in TIMING))
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append((path, f"{len(a)} items", f"{len(b)} items"))
        return sum(walk(x, y, f"{path}[{i}]", diffs) for i, (x, y) in enumerate(zip(a, b, strict=False)))
    if a != b:
        diffs.append((path, a, b))
    return 1


def main() -> None:
    before, after = ({r["harness"]: r for r in json.load(open(p))} for p in sys.argv[1:3])
    diffs: list = []
    n = walk(before, after, "", diffs)
    print(f"{len(before)} seeds before, {len(after)} after; {n} values compared, {len(diffs)} differ (timings ignored)")
    for d in diffs[:30]:
        print(d)


if __name__ == "__main__":
    main()
