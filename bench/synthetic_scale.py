"""Generation time of the synthetic suite at 1k / 10k / 100k / 1M events in total.

Two shapes per size: one long episode of N events, and N/1,000 episodes of 1,000 events.
Usage: python bench/synthetic_scale.py [--max 1000000]; prints a markdown table.
"""

from __future__ import annotations

import argparse
import gc
import time

from mstar.tasks.synthetic import SyntheticTask


def measure(episodes: int, events: int) -> tuple[float, int, int]:
    gc.collect()
    t0 = time.perf_counter()
    eps = SyntheticTask(seed=0, episodes=episodes, events=events).episodes("all")
    dt = time.perf_counter() - t0
    return dt, sum(len(e.events) for e in eps), sum(len(e.probes) for e in eps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=1_000_000)
    args = ap.parse_args()
    print("| events in total | shape | seconds | events/s | probes |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for total in (1_000, 10_000, 100_000, 1_000_000):
        if total > args.max:
            break
        for episodes in (1, max(1, total // 1_000)):
            dt, n, probes = measure(episodes, total // episodes)
            shape = f"{episodes} x {total // episodes:,}"
            print(f"| {n:,} | {shape} | {dt:.2f} | {n / dt:,.0f} | {probes:,} |", flush=True)
            if episodes == 1 and total <= 1_000:
                break


if __name__ == "__main__":
    main()
