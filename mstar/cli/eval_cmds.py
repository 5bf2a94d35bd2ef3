"""``mstar eval``, ``mstar tasks``, ``mstar seeds``."""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer

from mstar.cli.common import build_toolkit, fmt, json_stdout, parse_pairs
from mstar.errors import UsageError
from mstar.scoring import METRIC_VERSION
from mstar.tasks.base import DATA_RULE

DATA_HELP = ("The task's data: " + DATA_RULE + "; `mstar doctor` checks the same.")

METRIC_COLUMNS = [
    ("evidence_recall", "recall@B"),
    ("ndcg@10", "NDCG@10"),
    ("session_recall", "sess.recall"),
    ("answer_containment", "ans.contain"),
    ("qa_f1", "QA F1"),
    ("qa_judge", "judge"),
    ("context_tokens", "ctx tokens"),
    ("read_ms_p50", "read ms p50"),
    ("write_ms_p50", "write ms p50"),
    ("probes", "probes"),
    ("errors", "errors"),
]

MOSTLY = 0.5  # a harness whose probes errored more often than this failed the run: exit 1


def _failed(summary: dict[str, Any] | None) -> str | None:
    """'116 of 116 probes errored' when most of a harness's probes errored (its scores mean nothing)."""
    if not summary:
        return None
    n, bad = summary["overall"]["probes"], summary["overall"]["errors"]
    return f"{bad} of {n} probes errored" if n and bad / n > MOSTLY else None


JSON_KEYS = ("evidence_recall", "ndcg@10", "answer_containment", "context_tokens", "read_ms_p50", "write_ms_p50")


def _load_episodes(task: str, data: Path | None, split: str, task_opts: dict[str, Any], limit: int | None):
    from mstar.tasks.registry import get_task

    suite = get_task(task, data=data, **task_opts)
    eps = suite.episodes(split)
    if not eps:
        raise UsageError(f"--split {split}: task {task!r} has no episodes in this split")
    return eps[:limit] if limit else eps


def _start_backend(sandbox: str, program: Any, run_label: str) -> Future:
    """The backend, built in a thread with its first sandbox started (prewarm): the docker SDK import,
    the engine's round trips and the container start overlap the data load instead of preceding it.
    An unknown backend name is refused here, at once. The future gives (backend, the name of the
    sandbox that runs, the ``auto`` fallback warning or ""): the caller prints the warning once the
    arguments and the data are known good, so a typo is not preceded by a sandbox warning."""
    from mstar.sandbox.registry import BACKENDS, get_backend, settle

    if sandbox not in BACKENDS:
        get_backend(sandbox)  # raises the usual --sandbox error

    def start() -> tuple[Any, str, str]:
        name, warning = settle(sandbox)
        # One harness: the sandbox started here serves every episode (reused), so no spares are kept.
        backend = get_backend(name, **({"spares": 0} if program is not None else {}))
        prewarm = getattr(backend, "prewarm", None)
        if program is not None and prewarm is not None:
            from mstar.sandbox.base import SessionLimits

            prewarm(program, SessionLimits(), {"mstar.run": run_label})
        return backend, name, warning

    pool = ThreadPoolExecutor(1, thread_name_prefix="mstar-backend")
    try:
        return pool.submit(start)
    finally:
        pool.shutdown(wait=False)


def _close(backend: Any) -> None:
    """Kill the warm spare and idle runners; every container is removed before we print."""
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def _discard(starting: Future) -> None:
    try:
        backend, _, _ = starting.result()
    except Exception:  # noqa: BLE001 - no backend was made: nothing to close
        return
    _close(backend)


def _eval_one(spec: str, episodes, budget: int, backend, toolkit, knobs: dict[str, Any], run_label: str,
              qa: str = "off"):
    from mstar.evaluate import EvalConfig, evaluate
    from mstar.harness.loader import load_program
    from mstar.scoring.aggregate import summarize

    program = load_program(spec)
    if program.needs_llm and not toolkit.has_llm:
        return program, None
    t0 = time.perf_counter()
    results = evaluate(program, episodes, backend, toolkit, knobs, EvalConfig(budget=budget, collect_dump=False, qa=qa),
                       labels={"mstar.run": run_label})
    summary = summarize(results)
    summary["wall_s"] = time.perf_counter() - t0
    return program, summary


def _table(title: str, rows: list[tuple[str, dict[str, Any]]], first: str):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column(first)
    # The answer-step columns only when some row has them (LLM mode): offline tables stay narrow.
    cols = [(k, label) for k, label in METRIC_COLUMNS
            if k not in ("qa_f1", "qa_judge") or any(m and m.get(k) is not None for _, m in rows)]
    for _, label in cols:
        t.add_column(label, justify="right")
    for name, m in rows:
        if m is None:
            t.add_row(name, "[yellow]needs --model[/]", *[""] * (len(cols) - 1))
        else:
            t.add_row(name, *[fmt(m.get(k), 1 if "ms" in k or k == "context_tokens" else 3) for k, _ in cols])
    return t


def eval_cmd(
    harness: Annotated[str | None, typer.Argument(help="A seed name (see `mstar seeds`) or a path to a harness .py file.")] = None,
    task: Annotated[str, typer.Option("--task", "-t", help="Task suite (see `mstar tasks`).")] = "synthetic",
    data: Annotated[Path | None, typer.Option("--data", help=DATA_HELP)] = None,
    split: Annotated[str, typer.Option(
        "--split", help="train (default: a split the search may see), val, test (the held-out split "
        "evolution reports; scored only when asked for) or all.")] = "train",
    budget: Annotated[int, typer.Option("--budget", min=1, help="Context budget in tokens (regex \\w+|[^\\w\\s]).")] = 1024,
    sandbox: Annotated[str, typer.Option("--sandbox", help="auto (docker where an engine answers and the image is "
                                         "built, else process), docker, process or inline.")] = "auto",
    knob: Annotated[list[str] | None, typer.Option("--knob", "-k", help="Override a knob: KEY=VALUE (repeatable).")] = None,
    task_opt: Annotated[list[str] | None, typer.Option("--task-opt", "-o", help="Task option KEY=VALUE, e.g. episodes=10.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N episodes of the split.")] = None,
    all_seeds: Annotated[bool, typer.Option("--all-seeds", help="Evaluate every seed; one row each.")] = False,
    model: Annotated[str | None, typer.Option("--model", help="litellm model string; enables LLM seeds.")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Base URL of an OpenAI-compatible server.")] = None,
    embed_model: Annotated[str | None, typer.Option("--embed-model", help="Embedding model for toolkit.embed.")] = None,
    qa: Annotated[str | None, typer.Option("--qa", help="Answer step with --model: off, f1 (token F1) or judge (F1 + LLM judge; the default with --model).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Score one harness (or every seed) on a task split and print a table."""
    from rich.console import Console

    from mstar.harness.loader import seed_names

    if not all_seeds and not harness:
        raise UsageError("HARNESS: give a seed name or a file, or pass --all-seeds")
    if all_seeds and harness:
        raise UsageError("--all-seeds: do not also name a HARNESS")
    if all_seeds and knob:
        raise UsageError("--knob: knobs differ per seed; not allowed with --all-seeds")
    knobs = parse_pairs(knob, "--knob")
    if qa not in (None, "off", "f1", "judge"):
        raise UsageError(f"--qa: unknown mode {qa!r} (choose from off, f1, judge)")
    if qa not in (None, "off") and not model:
        raise UsageError("--qa: the answer step needs an LLM (pass --model)")
    qa = qa or ("judge" if model else "off")
    from mstar.tasks.base import check_split

    check_split(split)
    run_label = f"eval-{int(time.time())}"
    program = None
    if harness:
        from mstar.harness.knobs import KnobsError, resolve
        from mstar.harness.loader import load_program

        program = load_program(harness)  # a bad harness is reported before any data is read
        try:
            resolve(program.knob_specs, knobs)
        except KnobsError as e:
            raise UsageError(f"--knob: {e}") from None
    out = json_stdout() if as_json else sys.stdout
    starting = _start_backend(sandbox, program, run_label)
    try:
        episodes = _load_episodes(task, data, split, parse_pairs(task_opt, "--task-opt"), limit)
        toolkit = build_toolkit(model, api_base, embed_model, run_id=run_label)
    except BaseException:
        _discard(starting)  # the data's error is the one to report; its sandbox must not outlive it
        raise
    backend, sandbox_ran, warning = starting.result()  # an unavailable backend is reported here, before any evaluation
    if warning:
        print(warning, file=sys.stderr, flush=True)
    specs = seed_names() if all_seeds else [harness]
    # A fixed width when piped so tables are not squeezed to 80 columns in logs and CI.
    console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 150)
    results: dict[str, Any] = {}
    try:
        for spec in specs:
            program, summary = _eval_one(spec, episodes, budget, backend, toolkit, knobs, run_label, qa)
            results[program.name] = (program, summary)
    finally:
        _close(backend)

    if as_json:
        def payload(name, summary):
            if summary is None:
                return {"harness": name, "skipped": "needs --model"}
            return {
                "harness": name, "task": task, "split": split, "budget": budget, "sandbox": sandbox_ran,
                "metric_version": METRIC_VERSION, "embedder": getattr(toolkit, "embedder_name", None),
                "overall": {k: summary["overall"][k] for k in JSON_KEYS} | {
                    "session_recall": summary["overall"]["session_recall"],
                    "qa_f1": summary["overall"]["qa_f1"], "qa_judge": summary["overall"]["qa_judge"],
                    "probes": summary["overall"]["probes"], "errors": summary["overall"]["errors"],
                    "qa_errors": summary["overall"]["qa_errors"],
                    "judge_unusable": summary["overall"]["judge_unusable"]},
                "by_category": summary["by_category"],
                "episodes": summary["episodes"], "failures": summary["failures"], "wall_s": summary["wall_s"],
                "status": "failed" if _failed(summary) else "ok",
            }
        docs = [payload(n, s) for n, (_, s) in results.items()]
        print(json.dumps(docs if all_seeds else docs[0], indent=2), file=out, flush=True)
        _exit_if_failed(results)
        return

    title = (f"task={task} split={split} budget={budget} episodes={len(episodes)} sandbox={sandbox_ran} "
             f"embed={getattr(toolkit, 'embedder_name', '?')}")
    if all_seeds:
        console.print(_table(title, [(n, s["overall"] if s else None) for n, (_, s) in results.items()], "seed"))
    else:
        name, (program, s) = next(iter(results.items()))
        if s is None:
            raise UsageError(f"{name} needs an LLM: pass --model (it is skipped offline, never faked)")
        rows = [(c, m) for c, m in s["by_category"].items()] + [("[bold]overall[/]", s["overall"])]
        console.print(_table(f"{name}  {title}", rows, "category"))
    for name, (_, s) in results.items():
        o = (s or {}).get("overall") or {}
        if o.get("qa_errors") or o.get("judge_unusable"):
            console.print(f"[yellow]{name}: {o.get('qa_errors', 0)} of {o['probes']} answer steps failed (model "
                          f"error), {o.get('judge_unusable', 0)} judge verdicts were neither yes nor no: "
                          "both scored 0[/]")
        for f in (s or {}).get("failures", []):
            console.print(f"[red]{name}: episode {f['episode']} failed: {f['reason']}[/] {f['detail'][:500]}")
    _exit_if_failed(results)


def _exit_if_failed(results: dict[str, Any]) -> None:
    """Scripts and CI must tell a run whose probes mostly errored from a low score: one line, exit 1."""
    bad = [(name, why) for name, (_, s) in results.items() if (why := _failed(s))]
    if bad:
        from rich.console import Console
        from rich.markup import escape

        err = Console(stderr=True)
        for name, why in bad:
            err.print(f"[bold red]failed:[/] {escape(name)}: {why}; its scores mean nothing "
                      f"(the reasons are above, or under failures in --json)", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def tasks_cmd() -> None:
    """List the task suites."""
    from rich.console import Console
    from rich.table import Table

    from mstar.tasks.registry import describe_tasks

    t = Table(title="task suites", title_justify="left")
    for c in ("name", "data", "description"):
        t.add_column(c)
    for d in describe_tasks():
        t.add_row(d["name"], d["data_hint"] if d["needs_data"] else "built in", d["description"])
    Console().print(t)


def seeds_cmd() -> None:
    """List the seed harnesses."""
    from rich.console import Console
    from rich.table import Table

    from mstar.harness.loader import load_program, seed_names

    t = Table(title="seed harnesses", title_justify="left")
    for c in ("name", "LLM", "knobs", "idea"):
        t.add_column(c)
    for name in seed_names():
        p = load_program(name)
        t.add_row(name, "needs" if p.needs_llm else "-", str(len(p.knob_specs)), p.summary)
    Console().print(t)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("tasks")(tasks_cmd)
    app.command("seeds")(seeds_cmd)
    app.command("check")(check_cmd)


def check_cmd(
    harness: Annotated[str, typer.Argument(help="A seed name or a path to a harness .py file.")],
    sandbox: Annotated[str, typer.Option("--sandbox", help="Where the smoke test runs the program: auto, docker, "
                                         "process or inline.")] = "auto",
) -> None:
    """Validate a harness: static checks (AST) and a smoke write/read. Exit 2 with the reason when it fails."""
    from rich.console import Console

    from mstar.errors import HarnessError
    from mstar.harness.loader import load_program
    from mstar.harness.validate import ValidationError, validate_program
    from mstar.sandbox.registry import get_backend

    program = load_program(harness)  # a bad file is reported first, not after a sandbox warning
    backend = get_backend(sandbox, **({} if sandbox == "inline" else {"spares": 0}))
    try:
        checked = validate_program(program, backend)
    except ValidationError as e:
        raise HarnessError(program.path, f"{e.reason}: {e.detail}") from None
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    note = " (static checks only: it needs an LLM, pass --model to smoke-test it)" if checked.needs_llm else ""
    Console().print(f"[green]ok[/] {program.path}: {len(program.knob_specs)} knobs{note}")
