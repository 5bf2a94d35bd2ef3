"""``mstar evolve``: run (or resume) an evolution and report the best program against the seeds."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from mstar.cli.common import fmt, json_stdout, parse_pairs
from mstar.errors import InfrastructureError, UsageError
from mstar.tasks.base import DATA_RULE
from mstar.tasks.joint import parse_transfer

DATA_HELP = ("The task's data: " + DATA_RULE + "; `mstar doctor` checks the same.")

DEFAULT_GENERATIONS = 10  # when no limit at all is given


def _table(summary: dict[str, Any]):
    """The final table: train / val / test (joint objective in a joint run), then each suite's test
    score of a joint run, then each --transfer suite's score."""
    from rich.table import Table

    t = Table(title=f"{summary['task']}: {summary['metric']}@{summary['budget']} (picked on val, then test once)",
              title_justify="left")
    b = summary["best"]
    suites = list(b.get("suites") or next(iter(summary["seeds"].values()), {}).get("suites") or {})
    transfer = summary.get("transfer") or {}
    split_of = summary.get("transfer_split") or {}
    cols = ["train", "val", "test", *(f"{s} test" for s in suites),
            *(f"→ {task}" + (" (all)" if split_of.get(task) == "all" else "") for task in transfer)]
    t.add_column("program")
    for c in cols:
        t.add_column(c, justify="right")

    def cells(entry: dict[str, Any], key: str) -> list[str]:
        per = entry.get("suites") or {}
        return [fmt(entry.get(s), 4) for s in ("train", "val", "test")] + \
               [fmt((per.get(s) or {}).get("test"), 4) for s in suites] + \
               [fmt(transfer[task].get(key), 4) for task in transfer]

    if b["id"]:
        t.add_row(f"[bold]best[/] {b['name']} ({b['id']})", *cells(b, "best"))
    for name, s in summary["seeds"].items():
        t.add_row(f"seed {name}", *cells(s, name))
    return t


def _suites(tasks: list[str], data: list[str], opts: dict[str, Any]) -> tuple[list[Any], str | None, dict[str, Any]]:
    """(the suites of a joint run or [], the one suite's data, its options): --task, --data and
    --task-opt paired by position (see mstar.tasks.joint)."""
    from mstar.tasks.joint import SuiteSpec, pair_data, split_task_opts

    paired = pair_data(tasks, data)
    if len(tasks) == 1:
        return [], paired[0], opts
    per = split_task_opts(tasks, opts)
    return [SuiteSpec(task=t, data=d, options=o) for t, d, o in zip(tasks, paired, per, strict=True)], None, {}


def evolve_cmd(
    task: Annotated[list[str] | None, typer.Option("--task", "-t", metavar="TASK", help="Task suite (see `mstar tasks`). Repeat it to evolve against several suites at once (objective: the mean over suites of each suite's mean score; docs/EVOLVE.md).")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", metavar="PATH", help=DATA_HELP + " With several --task, the i-th --data goes with the i-th --task (--data - for a suite without a file).")] = None,
    task_opt: Annotated[list[str] | None, typer.Option("--task-opt", "-o", help="Task option KEY=VALUE (split and size options); with several --task, TASK.KEY=VALUE.")] = None,
    transfer: Annotated[list[str] | None, typer.Option("--transfer", metavar="TASK[:DATA]", help="TASK[:DATA] (repeatable): at the end, score the winner and every seed on this suite's test split (the whole suite if it has none), within --final-minutes.")] = None,
    budget: Annotated[int, typer.Option("--budget", min=1, help="Context budget in tokens.")] = 1024,
    metric: Annotated[str, typer.Option("--metric", help="Quality objective: evidence_recall, ndcg@10, session_recall, answer_containment; with --model also qa_f1, qa_judge (the answer step).")] = "evidence_recall",
    seeds: Annotated[str | None, typer.Option("--seeds", help="Comma-separated seed names (default: every usable seed).")] = None,
    generations: Annotated[int | None, typer.Option("--generations", "-g", min=0, help=f"Stop after N generations (default {DEFAULT_GENERATIONS} when no other limit is given).")] = None,
    children: Annotated[int, typer.Option("--children-per-gen", "--population", min=1, help="Children proposed per generation.")] = 6,
    islands: Annotated[int, typer.Option("--islands", min=1, max=16, help="Number of islands.")] = 2,
    island_size: Annotated[int, typer.Option("--island-size", min=2, help="Programs kept per island.")] = 10,
    migrate_every: Annotated[int, typer.Option("--migrate-every", min=1, help="Migrate each island's best every N generations.")] = 3,
    operators: Annotated[str | None, typer.Option("--operators", help="Operator mix, e.g. structural=0.6,tune=0.4.")] = None,
    op_opt: Annotated[list[str] | None, typer.Option("--op-opt", help="Operator option KEY=VALUE (repeatable), e.g. trials=20.")] = None,
    train_episodes: Annotated[int | None, typer.Option("--train-episodes", min=1, help="The search scores programs on at most N train episodes per suite (a fixed subset, the same for every run); val and test are untouched. For a suite too large to score every child on (e.g. LongMemEval's 144 haystacks).")] = None,
    screen: Annotated[int, typer.Option("--screen-episodes", min=1, help="Train episodes of the cascade's screen (per suite with several --task).")] = 1,
    minibatch: Annotated[int, typer.Option("--minibatch-episodes", min=1, help="Train episodes `tune` scores trials on (per suite with several --task).")] = 1,
    seed_cache: Annotated[bool | None, typer.Option("--seed-cache/--no-seed-cache", help="Reuse the seeds' results of earlier runs in the same --runs-dir (<runs-dir>/.cache; default: on, off with --model).")] = None,
    screen_probes: Annotated[int | None, typer.Option("--screen-probes", min=1, help="Grow the screen (per suite) past --screen-episodes until it holds N probes (a suite with one question per episode, like LongMemEval, needs many).")] = None,
    minibatch_probes: Annotated[int | None, typer.Option("--minibatch-probes", min=1, help="Grow tune's minibatch (per suite) past --minibatch-episodes until it holds N probes.")] = None,
    margin: Annotated[float, typer.Option("--cascade-margin", min=0, help="A child within this of its parent on the screen gets the full train evaluation.")] = 0.02,
    final_k: Annotated[int, typer.Option("--final-k", min=1, help="Top programs on train scored on val at the end.")] = 3,
    select: Annotated[str, typer.Option("--select", help="The run's result: 1se = best on train among the programs within one standard error of the best on val; val = best on val, strictly.")] = "1se",
    suite_floor: Annotated[bool, typer.Option("--suite-floor/--no-suite-floor", help="With several --task: return a program that loses to no seed on any suite's val when one exists (default), else pick on the joint score alone.")] = True,
    parent_policy: Annotated[str | None, typer.Option("--parent-policy", help="How parents are drawn: rank (default: by rank and few children, per island) or pareto (programs best on at least one train probe, in proportion to the probes they win).")] = None,
    behaviour_key: Annotated[str | None, typer.Option("--behaviour-key", help="When a screened child is a neutral variant: aggregate (default: same mean score, context size and errors), signature (same value on every screen probe) or code (never; only the code filter).")] = None,
    prefer_shorter: Annotated[bool | None, typer.Option("--prefer-shorter/--no-prefer-shorter", help="Among programs with equal scores, rank the shorter first (default: off).")] = None,
    island_reset_every: Annotated[int | None, typer.Option("--island-reset-every", min=0, help="Every N generations, re-seed the weaker half of the islands from the best of the others (default: never).")] = None,
    max_evals: Annotated[int | None, typer.Option("--max-evals", min=1, help="Stop after N episode evaluations.")] = None,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", min=0.01, help="Stop the search after M minutes of this session (then val and test are scored: allow a few minutes more); on --resume, M more minutes.")] = None,
    budget_usd: Annotated[float | None, typer.Option("--budget-usd", min=0, help="Hard LLM budget in USD.")] = None,
    budget_tokens: Annotated[int | None, typer.Option("--budget-tokens", min=1, help="Hard LLM budget in tokens (prompt + completion, every call): the one that binds for a local model, whose calls cost $0.")] = None,
    max_tokens: Annotated[str | None, typer.Option("--max-tokens", help="Completion caps per call by purpose, e.g. harness=256,operator=2048 (defaults: harness 512, operator 4096, answer 64, judge 8). A larger request is lowered to the cap.")] = None,
    final_minutes: Annotated[float | None, typer.Option("--final-minutes", min=0.01, help="Time limit of the final val/test step (default 10; half for val). What does not fit is skipped and reported.")] = None,
    stop_grace: Annotated[float | None, typer.Option("--stop-grace", min=0, help="Seconds evaluations in flight may finish after a stop request (default 30); then they are dropped and redone on --resume.")] = None,
    patience: Annotated[int | None, typer.Option("--patience", min=1, help="Stop after N generations without a better train score.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same run.")] = 0,
    sandbox: Annotated[str, typer.Option("--sandbox", help="auto (docker where an engine answers and the image is "
                                         "built, else process), docker, process or inline.")] = "auto",
    executor: Annotated[str, typer.Option("--executor", help="ray (parallel; a local instance unless --ray-address) or inline (in process, for debugging).")] = "ray",
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Sandboxes run at once by a local Ray instance (default: CPU count).")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Join this Ray cluster instead of starting one.")] = None,
    infra_wait: Annotated[float | None, typer.Option("--infra-wait", min=1, help="Seconds an evaluation waits (with "
                                                     "backoff) for a Docker engine, Ray node or broker that went away "
                                                     "before the run stops, resumable (default 600).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="litellm model string. Switches on exactly: the LLM operators (llm_reflect, llm_crossover) in the default mix, the seeds that need an LLM (mem0, mem_alpha), and --metric qa_f1/qa_judge. Other seeds stay offline (their llm_* knobs default to off). Recorded in config.json as llm_uses.")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Base URL of an OpenAI-compatible server.")] = None,
    embedder: Annotated[str | None, typer.Option("--embedder", help="toolkit.embed for the whole run: local (the "
                                                 "MiniLM model of mstar[embed]), hashing (a lexical stand-in), or "
                                                 "auto (local when installed; $MSTAR_EMBEDDER). Saved with the run.")] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where runs are written.")] = Path("runs"),
    run_id: Annotated[str | None, typer.Option("--run-id", help="Name of the run directory (default: time-based).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the run in this directory with its saved config. A run a limit ended needs a new one "
                                           "(--max-minutes: this session; --generations, --max-evals, --budget-usd: the whole run).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final summary as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view: plain log lines on stderr.")] = False,
) -> None:
    """Evolve a memory harness on a task; the best program on val is scored once on test, next to the seeds."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.markup import escape

    from mstar.evolve.core.config import EvolveConfig, StopConfig, new_run_id, parse_mix
    from mstar.evolve.core.engine import Engine
    from mstar.evolve.core.live import View
    from mstar.llm_limits import parse_max_tokens
    from mstar.sandbox.registry import get_backend

    policies = {k: v for k, v in {"parent_policy": parent_policy, "behaviour_key": behaviour_key,
                                  "prefer_shorter": prefer_shorter,
                                  "island_reset_every": island_reset_every}.items() if v is not None}
    stops = {"generations": generations, "max_evals": max_evals, "max_minutes": max_minutes,
             "budget_usd": budget_usd, "budget_tokens": budget_tokens, "patience": patience}
    extra_stops = {k: v for k, v in {"final_minutes": final_minutes, "stop_grace_s": stop_grace}.items()
                   if v is not None}
    try:
        limits = parse_max_tokens(max_tokens)
    except ValueError as e:
        raise UsageError(f"--max-tokens: {e}") from None
    if resume is not None:
        config = EvolveConfig.load(resume)
        if embedder is not None and embedder.strip().lower() not in ("auto", config.embedder):
            raise UsageError(f"--embedder: this run is evaluated with the {config.embedder!r} embedder; "
                             "a resumed run keeps it (scores of different embedders do not compare)")
        given = {k: v for k, v in stops.items() if v is not None}
        if max_tokens is not None:
            raise UsageError("--max-tokens: a resumed run keeps its caps (they change what is searched)")
        for k in policies:
            raise UsageError(f"--{k.replace('_', '-')}: a resumed run keeps the search policies of its config.json "
                             "(a replay under other policies would not be the same run)")
        # After the flag-specific refusals above, so a refused policy or cap is named even when the
        # command line also repeats the run's --task.
        if train_episodes is not None:
            raise UsageError("--train-episodes: a resumed run keeps the train episodes it searches on (its "
                             "config.json); scores on another subset would not compare")
        if task or data or task_opt or transfer:
            raise UsageError("--resume: a resumed run keeps its suites (--task, --data, --task-opt, --transfer "
                             "are in its config.json)")
        from mstar.cli.resume import plan

        resuming, new_stops = plan(resume, config.stops.model_dump(), given)  # refuses a resume that would not search
        # How a stop is carried out is kept unless given again; plan() speaks of the search limits only.
        new_stops = {"stop_grace_s": config.stops.stop_grace_s, "final_minutes": config.stops.final_minutes} \
            | new_stops | extra_stops
        if new_stops != config.stops.model_dump():  # only the limits may change on resume
            config.stops = StopConfig(**new_stops)
            config.save(resume)
        # Where to run is not what to search: a resumed run may use other workers or another cluster.
        config = config.model_copy(update={k: v for k, v in {"workers": workers, "ray_address": ray_address,
                                                             "infra_wait_s": infra_wait,
                                                             "seed_cache": seed_cache}.items() if v is not None})
        run_dir = resume
    else:
        resuming = ""
        if not task:
            raise UsageError("--task: name a task suite (see `mstar tasks`), or pass --resume RUN_DIR")
        suites, one_data, one_opts = _suites(task, data or [], parse_pairs(task_opt, "--task-opt"))
        if all(v is None for v in stops.values()):
            stops["generations"] = DEFAULT_GENERATIONS
        rid = run_id or new_run_id()
        run_dir = runs_dir / rid
        if (run_dir / "config.json").exists():
            raise UsageError(f"--run-id: {run_dir} already exists; continue it with --resume {run_dir}")
        try:
            config = EvolveConfig(
                run_id=rid, task="+".join(task), data=one_data, task_opts=one_opts, suites=suites,
                transfer=[parse_transfer(t) for t in transfer or []],
                budget=budget, metric=metric, seeds=[s.strip() for s in seeds.split(",") if s.strip()] if seeds else None,
                seed=seed, islands=islands, island_size=island_size, children_per_gen=children,
                migrate_every=migrate_every, operators=parse_mix(operators, with_llm=bool(model)),
                operator_options=parse_pairs(op_opt, "--op-opt"), screen_episodes=screen,
                train_episodes=train_episodes, screen_probes=screen_probes, minibatch_probes=minibatch_probes,
                minibatch_episodes=minibatch, cascade_margin=margin, final_k=final_k, select=select, suite_floor=suite_floor, sandbox=sandbox,
                executor=executor, workers=workers, ray_address=ray_address, model=model, api_base=api_base,
                **({"infra_wait_s": infra_wait} if infra_wait is not None else {}),
                embedder=embedder or "auto", seed_cache=seed_cache is not False, stops=StopConfig(**stops, **extra_stops), llm=limits, **policies)
        except ValidationError as e:
            err = e.errors()[0]
            flag = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
            raise UsageError(f"{flag}: {err['msg'].removeprefix('Value error, ')}") from None
    from mstar.evolve.core.transfer import load_transfer, trained_specs
    from mstar.tasks.joint import build_suite

    # A task or data error (of a --transfer suite too) before any sandbox warning.
    build_suite(config.task, config.data, config.task_opts, config.suites)
    load_transfer(config.transfer, trained_specs(config))
    get_backend(config.sandbox)  # an unavailable backend is reported before any work
    if resume is not None:
        Console(stderr=True).print(resuming, highlight=False, markup=False, soft_wrap=True)
    out = json_stdout() if as_json else sys.stdout
    view = View(live=False if quiet else None)
    view.start(to_stderr=as_json)
    t0 = time.monotonic()
    try:
        summary = Engine(config, run_dir, view=view).run()
    except KeyboardInterrupt:
        view.stop()
        Console(stderr=True).print(f"[red]aborted[/]; finished work is stored. Continue with: mstar evolve --resume {run_dir}")
        raise typer.Exit(130) from None
    except InfrastructureError as e:
        view.stop()  # one line, no traceback: the engine's message already says what to do next
        Console(stderr=True).print(f"[bold red]stopped:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(3) from None
    finally:
        view.stop()
    session_s = time.monotonic() - t0
    if as_json:
        print(json.dumps(summary | {"session_s": round(session_s, 2)}, indent=2), file=out, flush=True)
        return
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(_table(summary))
    took = (f"{session_s:.0f} s this session, {summary['wall_s']:.0f} s in all" if resume is not None
            else f"{summary['wall_s']:.0f} s")
    console.print(f"stopped: {summary['stop_reason']} · {summary['generations']} generations · "
                  f"{summary['evaluations']} evaluations · {took} · ${summary['usd']:.4f} · "
                  f"{summary.get('tokens', 0):,} LLM tokens", highlight=False)
    if summary.get("note"):
        console.print(f"[yellow]{escape(summary['note'])}[/]")
    if summary.get("tokens") and not summary.get("usd"):
        console.print("[yellow]the model's calls were priced at $0 (a local server, or a model litellm has no price "
                      "for): --budget-usd and the cost objective see nothing; --budget-tokens is the budget that "
                      "binds[/]")
    console.print(f"run: {summary['run_dir']} (best program: {Path(summary['run_dir']) / 'best.py'})")


def register(app: typer.Typer) -> None:
    app.command("evolve")(evolve_cmd)
