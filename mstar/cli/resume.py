"""What ``mstar evolve --resume RUN`` will do, said before it does it; refused when it would do nothing.

A run that a limit ended (time, generations, evaluations, USD, patience) is complete: resuming it
needs a new limit that says how much further to search. A run that was interrupted (Ctrl-C,
SIGTERM, a STOP file, kill -9) goes on with its saved limits. Limits count differently, and the
message says which: ``--max-minutes`` counts this session only; ``--generations``, ``--max-evals``
and ``--budget-usd`` count the whole run, so they must be above what the run already did. The limits
given to resume a complete run replace its saved ones; those given to an interrupted run change them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mstar.errors import UsageError

# Stop reasons of a run whose limits were reached (see mstar.evolve.core.stops); anything else was a request.
COMPLETE = ("time limit", "evaluation limit", "generation limit", "budget spent", "no improvement", "finished")


def _progress(run_dir: Path) -> dict[str, Any]:
    from mstar.evolve.store.run_store import RunStore

    store = RunStore(run_dir)
    try:
        final = store.get_state("final")
        tokens, usd = store.llm_totals()
        return {"final": final, "generations": store.get_state("generation_done", 0) or 0,
                "evaluations": store.count_episodes(), "wall_s": store.get_state("wall_s", 0.0) or 0.0,
                "usd": usd}
    finally:
        store.close()


def _cumulative_ok(stops: dict[str, Any], done: dict[str, Any]) -> None:
    """A whole-run limit at or below what is done would stop at once: say so instead."""
    checks = (("generations", "--generations", done["generations"], "generations"),
              ("max_evals", "--max-evals", done["evaluations"], "evaluations"),
              ("budget_usd", "--budget-usd", done["usd"], "USD spent"))
    for key, flag, have, what in checks:
        v = stops.get(key)
        if v is not None and v <= have:
            more = {"generations": f"{have + 5}", "max_evals": f"{have * 2 or 100}"}.get(key, f"{have * 2 or 1:g}")
            raise UsageError(f"{flag} {v:g}: this run already has {have:g} {what}, and {flag} counts the whole run; "
                             f"give more than that (e.g. {flag} {more})")


def _limits(stops: dict[str, Any]) -> str:
    parts = []
    if stops.get("max_minutes") is not None:
        parts.append(f"{stops['max_minutes']:g} more minutes of search")
    if stops.get("generations") is not None:
        parts.append(f"generation {stops['generations']} of the run")
    if stops.get("max_evals") is not None:
        parts.append(f"{stops['max_evals']} evaluations in all")
    if stops.get("budget_usd") is not None:
        parts.append(f"${stops['budget_usd']:g} spent in all")
    if stops.get("patience") is not None:
        parts.append(f"{stops['patience']} generations without a better train score")
    if not parts:
        return "none but Ctrl-C or a STOP file"
    return ", ".join(parts) + (" (whichever comes first)" if len(parts) > 1 else "")


def plan(run_dir: Path, saved: dict[str, Any], given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the line to print before a resumed session starts, the stop limits of that session); a
    ``UsageError`` when resuming would not search.

    ``saved``: the run's stop limits; ``given``: the limits passed on this command line. An interrupted
    run keeps its saved limits, changed by those given; a complete run takes the given ones only (a
    saved limit it already reached would stop it again at once)."""
    done = _progress(run_dir)
    final = done["final"] or {}
    reason = final.get("stop_reason", "")
    so_far = (f"{done['generations']} generations, {done['evaluations']} evaluations, "
              f"{done['wall_s']:.0f} s so far")
    if final and reason.startswith(COMPLETE) and not given:
        g, e = done["generations"], done["evaluations"]
        raise UsageError(
            f"--resume: {run_dir} is complete (stopped: {reason}; {so_far}). Resuming searches on from "
            f"there, then picks on val and scores test again: say how much further, e.g. --max-minutes 10 "
            f"(10 more minutes), --generations {g + 5} (up to generation {g + 5}) or --max-evals {e * 2 or 100} "
            f"(evaluations in all)")
    _cumulative_ok(given, done)
    complete = bool(final) and reason.startswith(COMPLETE)
    stops = dict(given) if complete else saved | given
    state = f"complete (stopped: {reason})" if complete else f"interrupted ({reason})" if final else "interrupted"
    return (f"resuming {run_dir}, {state}: {so_far}. This session's limits: {_limits(stops)}; then it "
            f"picks on val and scores test.", stops)
