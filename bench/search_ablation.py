"""Which part of the offline search pays for itself: an ablation over real ``Engine`` runs.

For each variant (the default search, and the search with one part switched off or one policy switched
on) and each search seed, an evolution runs with the same evaluation budget (``--max-evals``). Reported:
best-on-train against evaluations (mean over seeds at fixed evaluation counts), the val-picked program's
test score (mean +- sd), evaluations per minute of the search, and where the time went (sandbox start
and stop, the harness's own write/read time, scoring on the host, IPC and plumbing, recording, proposals).

    python bench/search_ablation.py --task locomo --data ../shared/data/locomo10.json \\
        --variants default,no_guidance,no_novelty,no_tune --seeds 3 --max-evals 100 --json out.json

Variants are config overrides (and, for ``no_new_seeds``, a narrower parts bin). A variant this mstar cannot
run as named (a missing ``EvolveConfig`` field, a value that is already the default, a missing seed or
engine hook) stops the script with a one-line error: a silently degraded variant would be the default run
under another name.

The seeds' scores are the same in every run (same programs, episodes, embedder and budget), so they are
computed once in a template run and their evaluation rows copied into each run's store before it
starts. The engine counts them as it counts a resumed run's stored evaluations: the seeds' train
evaluations use up ``--max-evals`` exactly as in a fresh run (their val/test rows are added to the limit,
since a fresh run scores those only at the end). ``--no-seed-cache`` evaluates them in every run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mstar.evolve.core.config import OFFLINE_MIX, EvolveConfig, StopConfig
from mstar.evolve.core.live import View
from mstar.harness.loader import seed_names

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the timing helpers next to this script
from ablation_timing import BUCKETS, AblationEngine, Clock, breakdown, timed_operators  # noqa: E402

NEW_SEEDS = ("lexical_plus", "rerank_pack")  # the seeds of the richer component vocabulary (issue 15)


def _refuse(variant: str, why: str) -> SystemExit:
    """A variant that cannot mean what it says on this mstar stops the script (one line), never a silent skip."""
    return SystemExit(f"--variants: {variant}: {why}")


# --- variants -----------------------------------------------------------------------------------------
def _default_of(name: str) -> Any:
    return EvolveConfig.model_fields[name].get_default(call_default_factory=True)


def _policy(name: str, value: Any) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """A variant that sets one EvolveConfig field to a value other than its default."""
    def make(variant: str, _base: dict[str, Any]) -> dict[str, Any]:
        if name not in EvolveConfig.model_fields:
            raise _refuse(variant, f"this mstar's EvolveConfig has no field {name!r}")
        if _default_of(name) == value:
            raise _refuse(variant, f"{name}={value!r} is already the default: the variant would be the default run")
        return {name: value}
    return make


def _no_guidance(_variant: str, base: dict[str, Any]) -> dict[str, Any]:
    return {"operator_options": {**base.get("operator_options", {}), "guided": False}}


def _no_tune(variant: str, base: dict[str, Any]) -> dict[str, Any]:
    mix = {k: w for k, w in base["operators"].items() if k != "tune"}
    if len(mix) == len(base["operators"]):
        raise _refuse(variant, "tune is not in the operator mix")
    return {"operators": mix}


def _no_pareto(variant: str, _base: dict[str, Any]) -> dict[str, Any]:
    if _default_of("parent_policy") != "rank":
        raise _refuse(variant, f"the default parent policy is {_default_of('parent_policy')!r}, not rank")
    return {"archive_rate": 0.0}  # rank parents only, none drawn from the Pareto archive


def _no_new_seeds(variant: str, base: dict[str, Any]) -> dict[str, Any]:
    missing = [n for n in NEW_SEEDS if n not in seed_names()]
    if missing:
        raise _refuse(variant, f"{', '.join(missing)} not in harnesses/")
    # Out of the seed list and out of the parts bin `structural` borrows from (AblationEngine checks both).
    return {"seeds": [n for n in (base.get("seeds") or seed_names()) if n not in NEW_SEEDS],
            "_exclude_parts": list(NEW_SEEDS)}


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    make: Callable[[str, dict[str, Any]], dict[str, Any]]


VARIANTS = {v.name: v for v in (
    Variant("default", "the default offline search (every seed of the library)", lambda _v, _b: {}),
    Variant("no_guidance", "structural moves drawn uniformly, not by the diagnosis (--op-opt guided=false)",
            _no_guidance),
    Variant("no_novelty", "no near-duplicate filter, no same-behaviour rejection (novelty=false)",
            _policy("novelty", False)),
    Variant("no_tune", "operator mix without tune (structural only)", _no_tune),
    Variant("no_pareto", "no parent from the Pareto archive (archive_rate=0, rank parents)", _no_pareto),
    Variant("pareto_parents", "per-probe Pareto parent selection (parent_policy=pareto)",
            _policy("parent_policy", "pareto")),
    Variant("signature_key", "per-probe score signature as behaviour key (behaviour_key=signature)",
            _policy("behaviour_key", "signature")),
    Variant("code_key", "no behavioural check, only the code filter (behaviour_key=code)",
            _policy("behaviour_key", "code")),
    Variant("prefer_shorter", "prefer shorter programs among equals (prefer_shorter=true)",
            _policy("prefer_shorter", True)),
    Variant("island_reset", "reset the weaker half of the islands every 3 generations (island_reset_every=3)",
            _policy("island_reset_every", 3)),
    Variant("no_new_seeds", f"without the seeds {', '.join(NEW_SEEDS)} (seed list and parts bin)", _no_new_seeds),
)}


# --- runs -----------------------------------------------------------------------------------------------
def base_kwargs(args: argparse.Namespace, seed: int, run_id: str) -> dict[str, Any]:
    return {"run_id": run_id, "task": args.task, "data": args.data, "task_opts": dict(args.task_opt),
            "budget": args.budget, "seed": seed, "sandbox": args.sandbox, "executor": "inline",
            "embedder": args.embedder, "operators": dict(OFFLINE_MIX), "operator_options": {},
            "seeds": list(args.only_seeds) if args.only_seeds else None}


def plan(names: list[str], args: argparse.Namespace) -> list[tuple[Variant, dict[str, Any]]]:
    """The variants with their overrides; one this mstar cannot run as named stops the script."""
    out = []
    for name in names:
        v = VARIANTS[name]
        made = v.make(name, base_kwargs(args, 0, "plan"))
        try:
            EvolveConfig(**{**base_kwargs(args, 0, "plan"), **{k: x for k, x in made.items() if not k.startswith("_")}})
        except ValueError as e:
            raise _refuse(name, f"this mstar refuses the override: {str(e).splitlines()[-1].strip()}") from None
        out.append((v, made))
    return out


def _db(run_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(run_dir / "run.db")


def seed_template(args: argparse.Namespace, runs_dir: Path) -> dict[str, Any]:
    """Every usable seed scored on train, val and test once (a run with no generation). A template left
    by an earlier invocation with the same --runs-dir is resumed: only what it lacks is evaluated."""
    run_dir = runs_dir / "_seeds"
    clock = Clock()
    if (run_dir / "config.json").is_file():
        saved = EvolveConfig.load(run_dir)
        mine = base_kwargs(args, 0, "_seeds")
        differs = [k for k in ("task", "data", "task_opts", "budget", "embedder", "seeds") if getattr(saved, k) != mine[k]
                   and not (k == "embedder" and mine[k] == "auto")]
        if differs:
            raise SystemExit(f"--runs-dir: {run_dir} holds seed scores of another setup ({', '.join(differs)} differ)")
    cfg = EvolveConfig(**base_kwargs(args, 0, "_seeds"), stops=StopConfig(generations=0, final_minutes=args.final_minutes))
    final = None
    if (run_dir / "run.db").is_file():  # finished by an earlier invocation: read, not run (no lock taken)
        with _db(run_dir) as c:
            row = c.execute("SELECT value FROM state WHERE key='final'").fetchone()
        final = json.loads(row[0]) if row else None
    if final is None:
        with open(runs_dir / "_seeds.log", "w", encoding="utf-8") as log:
            final = AblationEngine(cfg, run_dir, view=View(live=False, stream=log), clock=clock).run()
    summary = final
    with _db(run_dir) as c:
        ids = dict(c.execute("SELECT name, id FROM programs WHERE status='seed'").fetchall())
    return {"run_dir": str(run_dir), "seed_ids": ids, "wall_s": time.perf_counter() - clock.t0,
            "evaluations": len(clock.jobs), "seeds": summary["seeds"]}


def prefill(run_dir: Path, template: dict[str, Any], names: list[str]) -> int:
    """Copy the template's evaluation rows of ``names`` into a fresh run store; returns the number of
    val/test episodes copied (train ones count toward --max-evals as a fresh run's would)."""
    from mstar.evolve.store.run_store import RunStore

    if run_dir.exists():
        raise SystemExit(f"--runs-dir: {run_dir} already exists; give an empty directory")
    run_dir.mkdir(parents=True)
    RunStore(run_dir).close()  # the schema
    ids = [template["seed_ids"][n] for n in names if n in template["seed_ids"]]
    marks = ",".join("?" * len(ids))
    with _db(run_dir) as c:
        c.execute("ATTACH DATABASE ? AS t", (str(Path(template["run_dir"]) / "run.db"),))
        c.execute(f"INSERT INTO evaluations SELECT * FROM t.evaluations WHERE program IN ({marks})", ids)
        n = c.execute(f"SELECT COUNT(*) FROM evaluations WHERE probe='' AND split!='train' AND program IN ({marks})",
                      ids).fetchone()[0]
    return int(n)


def nontrain_rows(run_dir: Path, ids: list[str]) -> int:
    with _db(run_dir) as c:
        return int(c.execute(f"SELECT COUNT(*) FROM evaluations WHERE probe='' AND split!='train' AND program IN "
                             f"({','.join('?' * len(ids))})", ids).fetchone()[0])


def run_one(variant: Variant, made: dict[str, Any], seed: int, args: argparse.Namespace, runs_dir: Path,
            template: dict[str, Any] | None) -> dict[str, Any]:
    run_id = f"{variant.name}-s{seed}"
    run_dir = runs_dir / run_id
    overrides = {k: v for k, v in made.items() if not k.startswith("_")}
    kw = {**base_kwargs(args, seed, run_id), **overrides}
    extra = 0
    names = kw.get("seeds") or list(template["seed_ids"]) if template is not None else []
    if (run_dir / "config.json").is_file():
        # A run an earlier invocation left unfinished: resumed (the same lineage, by replay) up to this
        # --max-evals; what this session measures is this session's time.
        cfg = EvolveConfig.load(run_dir)
        same = EvolveConfig(**kw).model_dump(exclude={"created", "stops", "embedder", "llm_uses"})
        if cfg.model_dump(exclude={"created", "stops", "embedder", "llm_uses"}) != same:
            raise SystemExit(f"--runs-dir: {run_dir} holds a run of another setup; give an empty directory")
        if template is not None:
            extra = nontrain_rows(Path(template["run_dir"]), [template["seed_ids"][n] for n in names
                                                               if n in template["seed_ids"]])
        cfg.stops = StopConfig(max_evals=args.max_evals + extra, final_minutes=args.final_minutes)
        cfg.save(run_dir)
    else:
        if template is not None:
            extra = prefill(run_dir, template, names)
        cfg = EvolveConfig(**kw, stops=StopConfig(max_evals=args.max_evals + extra, final_minutes=args.final_minutes))
    clock = Clock()
    with open(runs_dir / f"{run_id}.log", "a", encoding="utf-8") as log:  # a resumed run appends
        eng = AblationEngine(cfg, run_dir, view=View(live=False, stream=log), clock=clock,
                              operators=timed_operators(cfg, clock), exclude_parts=tuple(made.get("_exclude_parts", ())))
        summary = eng.run()
    wall = time.perf_counter() - clock.t0
    return {"variant": variant.name, "seed": seed, "run_dir": str(run_dir), "overrides": overrides,
            "best": summary["best"], "evaluations": summary["evaluations"] - extra, "stop_reason": summary["stop_reason"],
            "curve": curve(run_dir, extra), "proposals": proposals(run_dir), "wall_s": wall,
            "time": breakdown(clock, wall), "notes": clock.notes}


def curve(run_dir: Path, extra: int) -> list[tuple[int, float]]:
    """(evaluations, best on train) after the seeds and at the end of every generation, from the store."""
    with _db(run_dir) as c:
        seeds = [json.loads(p) for (p,) in c.execute("SELECT payload FROM events WHERE kind='seeds'")]
        seed_ids = [i for (i,) in c.execute("SELECT id FROM programs WHERE status='seed'")]
        n_seed = c.execute(f"SELECT COUNT(*) FROM evaluations WHERE probe='' AND split='train' AND program IN "
                           f"({','.join('?' * len(seed_ids))})", seed_ids).fetchone()[0]
        gens = [json.loads(p) for (p,) in c.execute("SELECT payload FROM events WHERE kind='generation' ORDER BY id")]
    out = []
    if seeds:
        out.append((n_seed, max(v for v in seeds[0].values() if v is not None)))
    out += [(g["evaluations"] - extra, g["best"]) for g in gens if g.get("best") is not None]
    return out


def proposals(run_dir: Path) -> dict[str, dict[str, int]]:
    """operator -> outcome -> count, from the run store's proposals table."""
    out: dict[str, dict[str, int]] = {}
    with _db(run_dir) as c:
        for op, outcome, n in c.execute("SELECT operator, outcome, COUNT(*) FROM proposals GROUP BY operator, outcome"):
            out.setdefault(op, {})[outcome] = n
    return out


# --- summary --------------------------------------------------------------------------------------------
def at(points: list[tuple[int, float]], x: int) -> float | None:
    """Best on train after ``x`` evaluations (the last point at or before x); None before the seeds are scored."""
    val = None
    for e, b in points:
        if e <= x:
            val = b
    return val


def mean_sd(xs: list[float]) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def checkpoints(runs: list[dict[str, Any]], max_evals: int) -> list[int]:
    """The seeds' end (the first point of every curve), then about six steps of a round size up to max_evals."""
    first = min((r["curve"][0][0] for r in runs if r["curve"]), default=0)
    span = max(max_evals - first, 1)
    step = next(s for s in (5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 10**9) if span / s <= 7)
    return sorted({first, max_evals} | set(range((first // step + 1) * step, max_evals, step)))


def aggregate(runs: list[dict[str, Any]], max_evals: int) -> dict[str, Any]:
    cps = checkpoints(runs, max_evals)
    out: dict[str, Any] = {"checkpoints": cps, "variants": {}}
    for name in dict.fromkeys(r["variant"] for r in runs):
        rs = [r for r in runs if r["variant"] == name]
        curve_cells = {}
        for x in cps:
            curve_cells[x] = mean_sd([at(r["curve"], x) for r in rs])
        ops: dict[str, int] = {}
        for r in rs:
            for op, outs in r["proposals"].items():
                ops[op] = ops.get(op, 0) + sum(outs.values())
        out["variants"][name] = {
            "runs": len(rs), "curve": {str(x): v for x, v in curve_cells.items()},
            "train": mean_sd([r["best"]["train"] for r in rs]), "test": mean_sd([r["best"]["test"] for r in rs]),
            "evals_per_min": mean_sd([r["time"]["evals_per_min"] for r in rs]),
            "accepted": mean_sd([sum(o.get("accepted", 0) for o in r["proposals"].values()) for r in rs]),
            "proposals_by_operator": ops}
    return out


def _f(m: float | None, sd: float | None = None, nd: int = 4) -> str:
    if m is None:
        return "-"
    return f"{m:.{nd}f}" + (f" ± {sd:.{nd}f}" if sd is not None else "")


def render(agg: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    cps = agg["checkpoints"]
    lines = ["best on train after N evaluations (mean over seeds); returned program on test (mean ± sd)", "",
             "| variant | runs | " + " | ".join(f"@{x}" for x in cps) + " | test | Δ test vs default | eval/min |",
             "|---|---:|" + "---:|" * len(cps) + "---:|---|---:|"]
    base = agg["variants"].get("default")
    for name, v in agg["variants"].items():
        m, sd = v["test"]
        delta = "-"
        if base and name != "default" and m is not None and base["test"][0] is not None:
            d = m - base["test"][0]
            noise = max(sd or 0.0, base["test"][1] or 0.0)
            delta = f"{d:+.4f}" + (" (within sd)" if abs(d) <= noise else "")
        lines.append(f"| {name} | {v['runs']} | " + " | ".join(_f(v["curve"][str(x)][0]) for x in cps)
                     + f" | {_f(m, sd)} | {delta} | {_f(*v['evals_per_min'], nd=1)} |")
    tot = {k: sum(r["time"]["seconds"][k] for r in runs) for k in BUCKETS}
    wall = sum(r["wall_s"] for r in runs)
    lines += ["", f"where the time goes (all {len(runs)} runs, {wall:.0f} s in all)", "",
              "| part | seconds | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {tot[k]:.1f} | {100 * tot[k] / wall:.1f} % |" for k in BUCKETS]
    lines += ["", "proposals by operator (all seeds): " + "; ".join(
        f"{n}: " + ", ".join(f"{op} {c}" for op, c in sorted(v["proposals_by_operator"].items()))
        for n, v in agg["variants"].items())]
    return "\n".join(lines)


def run_all(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)} (choose from {', '.join(VARIANTS)})")
    todo = plan(names, args)
    notes: list[str] = []
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="mstar-ablation-"))
    runs_dir.mkdir(parents=True, exist_ok=True)
    template = None
    if not args.no_seed_cache:
        template = seed_template(args, runs_dir)
        log(f"seeds: {template['evaluations']} evaluations (train, val, test) in {template['wall_s']:.0f} s, "
            "shared by every run")
    runs = []
    for seed in range(args.seed_base, args.seed_base + args.seeds):
        for v, made in todo:  # seed-major: a run stopped early still has every variant at the first seeds
            r = run_one(v, made, seed, args, runs_dir, template)
            runs.append(r)
            log(f"{v.name} seed {seed}: train {_f(r['best']['train'])} test {_f(r['best']['test'])} "
                f"({r['evaluations']} evaluations, {r['wall_s']:.0f} s, {r['time']['evals_per_min']} eval/min)")
            if args.json:  # written as it goes: a long run killed midway keeps what finished
                _write(args.json, _result(args, notes, template, runs, None))
    agg = aggregate(runs, args.max_evals) if runs else {"checkpoints": [], "variants": {}}
    out = _result(args, notes, template, runs, agg)
    if args.json:
        _write(args.json, out)
    if runs:
        log(render(agg, runs))
    if not args.runs_dir and not args.keep_runs:
        shutil.rmtree(runs_dir, ignore_errors=True)
    return out


def _result(args: argparse.Namespace, notes: list[str], template: Any, runs: list[dict[str, Any]],
            agg: dict[str, Any] | None) -> dict[str, Any]:
    return {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "notes": notes,
            "seeds_template": template, "runs": runs, "summary": agg}


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def episode_cost(args: argparse.Namespace) -> str:
    """One train episode of ``--episode-cost PROGRAM`` with and without the diagnosis re-reads (the engine reads
    every missed probe again at 4x the budget), alternated ``--seeds`` times: what diagnosis costs per episode."""
    from mstar.evaluate import EvalConfig, evaluate_episode
    from mstar.evolve.core.engine import DIAGNOSE_FACTOR
    from mstar.harness.loader import load_program
    from mstar.sandbox.registry import get_backend
    from mstar.tasks.registry import get_task
    from mstar.toolkit import Toolkit

    ep = get_task(args.task, data=args.data, **dict(args.task_opt)).episodes("train")[0]
    prog, backend = load_program(args.episode_cost), get_backend(args.sandbox)
    lines = [f"{args.episode_cost} on {ep.id} ({len(ep.probes)} probes), budget {args.budget}", "",
             "| diagnosis re-reads | wall s | scoring on host s | harness s (incl. re-reads) | sandbox start/stop s |",
             "|---|---:|---:|---:|---:|"]
    for _ in range(args.seeds):
        for factor in (0, DIAGNOSE_FACTOR):
            r = evaluate_episode(prog, ep, backend, Toolkit(), None, EvalConfig(budget=args.budget, diagnose_factor=factor))
            harness = (sum(r.write_ms) + sum(r.manage_ms) + sum(p.read_ms for p in r.probes) + r.diag_read_ms) / 1000
            lines.append(f"| {'at ' + str(factor) + 'x budget' if factor else 'off'} | {r.wall_s:.2f} | "
                         f"{r.score_ms / 1000:.2f} | {harness:.2f} | {(r.open_ms + r.close_ms) / 1000:.2f} |")
    return "\n".join(lines)


def _pair(text: str) -> tuple[str, Any]:
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise argparse.ArgumentTypeError(f"--task-opt: expected KEY=VALUE, got {text!r}")
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="synthetic")
    p.add_argument("--data", default=None)
    p.add_argument("--task-opt", type=_pair, action="append", default=[], help="task option KEY=VALUE")
    p.add_argument("--variants", default="default,no_guidance,no_novelty,no_tune,no_pareto,no_new_seeds",
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, default=3, help="search seeds per variant")
    p.add_argument("--only-seeds", type=lambda t: [n.strip() for n in t.split(",") if n.strip()], default=None,
                   help="start from these seed programs only (default: the whole library)")
    p.add_argument("--seed-base", type=int, default=0, help="first search seed")
    p.add_argument("--max-evals", type=int, default=100, help="evaluation budget of every run")
    p.add_argument("--budget", type=int, default=1024, help="context budget in tokens")
    p.add_argument("--sandbox", default="inline", help="sandbox backend (the executor is inline)")
    p.add_argument("--embedder", default="hashing", help="toolkit.embed of every run: hashing, local or auto")
    p.add_argument("--final-minutes", type=float, default=10.0)
    p.add_argument("--runs-dir", type=Path, default=None, help="keep the runs here (default: a temporary dir)")
    p.add_argument("--keep-runs", action="store_true", help="keep the temporary run directories")
    p.add_argument("--no-seed-cache", action="store_true", help="score the seeds in every run")
    p.add_argument("--json", type=Path, default=None, help="write raw results here")
    p.add_argument("--episode-cost", default=None, metavar="PROGRAM",
                   help="time one train episode of PROGRAM with and without the diagnosis re-reads (runs no search)")
    p.add_argument("--render", type=Path, nargs="+", default=None,
                   help="print the tables of one or more --json files, runs pooled (runs nothing)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.render is not None:
        runs, max_evals = [], 0
        for path in args.render:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                runs += data["runs"]
                max_evals = max(max_evals, int(data["args"]["max_evals"]))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"--render: {path} is not a --json file of this script: {e}") from None
        print(render(aggregate(runs, max_evals), runs) if runs else "no finished run")
        return 0
    for flag, v in (("--seeds", args.seeds), ("--max-evals", args.max_evals)):
        if v < 1:
            raise SystemExit(f"{flag}: must be at least 1, got {v}")
    if args.episode_cost:
        print(episode_cost(args), flush=True)
        return 0
    run_all(args, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
