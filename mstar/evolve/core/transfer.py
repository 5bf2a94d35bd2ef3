"""Per-suite scores of a joint run, and transfer: the winner and the seeds on suites the search never saw.

A transfer suite (``--transfer TASK[:DATA]``) is loaded when the run starts, so a bad name or file is
refused before any work. Its episodes are scored in the final step, after test and inside the same
``--final-minutes`` limit, for the returned program first and then each seed; what does not fit is
skipped and counted in the summary's ``final.skipped``. The episodes are the suite's ``test`` split, or
the whole suite when that split is empty (the summary's ``transfer_split`` says which). They are stored
like any evaluation under the split ``transfer:<task>`` (episode ids ``transfer:<task>/<id>``), so a
resumed run does not score them twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mstar.episodes import Episode
from mstar.errors import UsageError
from mstar.tasks.joint import SuiteSpec, group_of, namespaced

if TYPE_CHECKING:
    from mstar.evolve.core.engine import Engine
    from mstar.evolve.core.run_state import RunState

PREFIX = "transfer:"


def load_transfer(specs: list[SuiteSpec], trained: list[SuiteSpec]) -> dict[str, tuple[str, list[Episode]]]:
    """``{task: (the split used, its episodes with namespaced ids)}``; a ``UsageError`` for a suite given
    twice or one the run already evolves on (same task, data and options)."""
    from mstar.tasks.registry import get_task

    out: dict[str, tuple[str, list[Episode]]] = {}
    for spec in specs:
        flag = f"--transfer {spec.task}" + (f":{spec.data}" if spec.data else "")
        if spec.task in out:
            raise UsageError(f"{flag}: {spec.task} is given twice (one --transfer per task)")
        if spec in trained:
            raise UsageError(f"{flag}: the run evolves on this suite already (its test split is in the table)")
        suite = get_task(spec.task, data=spec.data, **spec.options)
        split = "test"
        episodes = suite.episodes("test")
        if not episodes:
            split, episodes = "all", suite.episodes("all")
        if not episodes:
            raise UsageError(f"{flag}: the suite has no episodes")
        out[spec.task] = (split, namespaced(PREFIX + spec.task, episodes))
    return out


def split_name(task: str) -> str:
    return PREFIX + task


def suite_ids(eng: RunState, split: str, label: str) -> list[str]:
    """The episodes of ``split`` that belong to a joint run's suite ``label``."""
    return [e for e in eng.ids[split] if group_of(e) == label]


def per_suite(eng: RunState, pid: str) -> dict[str, dict[str, float | None]]:
    """A joint run's scores of ``pid`` on each suite's train, val and test (each a plain probe-weighted
    mean); {} for a one-suite run."""
    out: dict[str, dict[str, float | None]] = {}
    for label in eng.suites:
        row: dict[str, float | None] = {}
        for split in ("train", "val", "test"):
            ids = suite_ids(eng, split, label)
            row[split] = eng.book.score(pid, split, ids) if ids else None
        out[label] = row
    return out


def transfer_rows(eng: RunState, best: str | None) -> dict[str, dict[str, float | None]]:
    """``{task: {"best" | seed name: score or None (skipped)}}``."""
    out: dict[str, dict[str, float | None]] = {}
    for task in eng.transfer:
        split = split_name(task)
        ids = eng.ids[split]
        row: dict[str, float | None] = {}
        if best is not None:
            row["best"] = eng.book.score(best, split, ids)
        for r in eng.seeds:
            row[r.name] = eng.book.score(r.id, split, ids)
        out[task] = row
    return out


def score_transfer(eng: RunState, programs: list[str], deadline: float, bounded: Any) -> dict[str, int]:
    """Score ``programs`` on each transfer suite until ``deadline`` (``bounded``: the final step's
    bounded scoring); returns the skipped evaluations per transfer split."""
    skipped: dict[str, int] = {}
    for task, used in eng.transfer.items():
        split = split_name(task)
        eng.view.log(f"final: transfer: scoring {len(programs)} programs on {task} ({used} split, "
                     f"{len(eng.ids[split])} episodes)")
        n = bounded(eng, [eng.target(p) for p in programs], split, deadline)
        if n:
            skipped[split] = n
            eng.view.log(f"final: transfer to {task}: {n} evaluations skipped (time limit; shown as '-')")
    return skipped


def trained_specs(cfg: Any) -> list[SuiteSpec]:
    """The suites a run evolves on, as specs (for telling a transfer suite from them)."""
    return list(cfg.suites) or [SuiteSpec(task=cfg.task, data=cfg.data, options=cfg.task_opts)]


def attach(eng: Engine, episodes: dict[str, Episode]) -> None:
    """Make the transfer episodes known to the executor (``episodes``) and to ``eng.ids``."""
    for task, (_, eps) in eng.transfer.items():
        eng.ids[split_name(task)] = [e.id for e in eps]
        episodes.update({e.id: e for e in eps})
