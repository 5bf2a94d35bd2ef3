"""Time a full test-split evaluation on the inline, process and docker sandboxes in one run.

The backends are interleaved (the order rotates every repeat) so that load from other work on the
machine hits them all alike; each timing is backend construction + evaluation + close, what a user
waits for. The metrics of every run must be identical across backends (the sandbox must not change a
score): the script exits 1 when they differ. With ``--write`` the result and the exact command replace
the "Sandbox overhead" section of docs/BENCHMARKS.md.

    python bench/sandbox_overhead.py --data /work/shared/data/locomo10.json --repeats 5 --write
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Sandbox overhead"


def _metrics(results: list[Any]) -> dict[str, Any]:
    """What a backend must not change: every probe's score and every failure (timings excluded)."""
    from mstar.scoring.aggregate import summarize

    s = summarize(results)
    overall = {k: v for k, v in s["overall"].items() if not k.endswith("_ms_p50")}
    return {"overall": overall, "failures": s["failures"]}


def run_once(name: str, program: Any, episodes: list[Any], budget: int) -> tuple[float, dict[str, Any]]:
    from mstar.evaluate import EvalConfig, evaluate
    from mstar.sandbox.registry import get_backend
    from mstar.toolkit import Toolkit

    t0 = time.perf_counter()
    backend = get_backend(name, spares=0)  # as `mstar eval HARNESS` does: one program, its sandbox reused
    results = evaluate(program, episodes, backend, Toolkit(), {}, EvalConfig(budget=budget, collect_dump=False),
                       labels={"mstar.run": f"bench-{os.getpid()}"})
    close = getattr(backend, "close", None)
    if close is not None:
        close()
    return time.perf_counter() - t0, _metrics(results)


def run_cli(name: str, args: argparse.Namespace) -> tuple[float, dict[str, Any]]:
    """The acceptance command as a user runs it (a fresh process: imports, data load, sandbox start)."""
    import json
    import shutil
    import subprocess

    exe = shutil.which("mstar")
    cmd = [exe] if exe else [sys.executable, "-m", "mstar.cli.main"]
    cmd += ["eval", args.harness, "--task", args.task, "--data", str(args.data), "--split", args.split,
            "--budget", str(args.budget), "--sandbox", name, "--json"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-2000:]}")
    out = json.loads(r.stdout)
    overall = {k: v for k, v in out["overall"].items() if not k.endswith("_ms_p50")}
    return wall, {"overall": overall, "failures": out["failures"]}


def write_section(text: str) -> Path:
    """Replace (or append) this script's own ``##`` section of the shared docs/BENCHMARKS.md."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(new)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MSTAR_DATA", "")) or None,
                    help="LoCoMo data file (else $MSTAR_DATA)")
    ap.add_argument("--harness", default="bm25")
    ap.add_argument("--task", default="locomo")
    ap.add_argument("--split", default="test")
    ap.add_argument("--budget", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backends", default="inline,process,docker")
    ap.add_argument("--write", action="store_true", help="write the result into docs/BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.data is None or not args.data.exists():
        ap.error(f"--data: {args.data} not found (give the LoCoMo json, or set MSTAR_DATA)")
    if args.repeats < 1:
        ap.error("--repeats: must be at least 1")

    from mstar.harness.loader import load_program
    from mstar.tasks.registry import get_task

    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    program = load_program(args.harness)
    episodes = get_task(args.task, data=args.data).episodes(args.split)
    n_probes = sum(len(e.probes) for e in episodes)
    modes = {"cli": lambda n: run_cli(n, args), "in-process": lambda n: run_once(n, program, episodes, args.budget)}
    times: dict[tuple[str, str], list[float]] = {(m, n): [] for m in modes for n in names}
    reference: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()[0]
    run_once(names[0], program, episodes, args.budget)  # warm-up: imports, page cache, docker client
    for rep in range(args.repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            for mode, fn in modes.items():
                wall, metrics = fn(name)
                times[mode, name].append(wall)
                ref = reference.setdefault(mode, metrics)
                if metrics != ref:
                    print(f"FAIL: {mode} {name} gave other metrics: {metrics} != {ref}", file=sys.stderr)
                    return 1
                print(f"repeat {rep + 1} {mode:10s} {name:8s} {wall:7.3f} s", flush=True)

    rows = []
    for mode in modes:
        base_times = times[mode, names[0]]
        base = statistics.median(base_times)
        for name in names:
            ts = times[mode, name]
            med = statistics.median(ts)
            paired = statistics.median(t / b for t, b in zip(ts, base_times, strict=True))
            rows.append(f"| {mode} | {name} | {med:.3f} | {min(ts):.3f} | {med / base:.2f}x | {paired:.2f}x |")
    cmd = "python bench/sandbox_overhead.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    text = "\n".join([
        SECTION, "",
        f"Full `{args.split}` split of `{args.task}` ({len(episodes)} episodes, {n_probes} probes), harness "
        f"`{args.harness}`, budget {args.budget}; {args.repeats} interleaved repeats per backend. `cli`: the "
        f"whole `mstar eval {args.harness} --task {args.task} --split {args.split} --sandbox B --json` in a fresh "
        "process (what a user waits for: imports, data, sandbox start); `in-process`: backend construction + "
        "`evaluate()` + close in this process (the harness's imports already cached for inline: the strictest "
        "ratio). Metrics identical across backends (checked every run).",
        f"Machine: {os.cpu_count()} cores, {_mem_gib()} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; shared with other work, hence the medians. Load average "
        f"(1 min) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.", "",
        f"Command: `{cmd}`", "",
        f"| timing | backend | median s | best s | median / {names[0]} median | median of paired ratios |",
        "|---|---|---|---|---|---|", *rows, "",
        "Target (issue 4): docker within 1.3x of inline. A sandbox whose episode ended cleanly is reused "
        "for the next episode of the same program (the runner re-loads the source into a fresh module and "
        "`Memory`; never across programs, limits or labels, never after a failure; mstar/sandbox/warm.py), "
        "so only the first episode pays a start: a fresh interpreter importing numpy + bm25s (0.35-0.8 s "
        "of CPU) and a container created and started through dockerd. `mstar eval HARNESS` starts that one "
        "sandbox while the data loads and keeps no spares (`spares=0`: before, two spares were started and "
        "killed unused, competing with the evaluation for the 2 cores; measured A/B, in process with the "
        "prewarm, 8 interleaved pairs: docker 1.23 s vs 1.43 s, paired 0.86x; process 0.84x; `python bench/warm_spares_ab.py --data ../shared/data/locomo10.json --sandbox docker|process --pairs 8`). The CLI also builds the backend (docker SDK import, engine round trips, ~0.14 s) and "
        "starts that sandbox in a thread while the data loads. What is left: the backend's `close()` "
        "(~0.08 s: the runner killed, its container removed before the command returns), the first "
        "read waiting for the runner's imports, and the runner sharing the 2 cores with the host's "
        "scoring, so the ratio moves by +-0.1 between runs.", "",
    ])
    print(text)
    if args.write:
        print(f"wrote {write_section(text)}")
    return 0


def _mem_gib() -> int:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
