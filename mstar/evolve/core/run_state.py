"""What a search leaves to the final step: the explicit state the pick, the test run and the summary read.

The engine hands this over when the search ends (``Engine.run_state``); the final step reads nothing else
of the engine, so it can be run, and tested, on any state that has these parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mstar.evolve.core.config import EvolveConfig
from mstar.evolve.core.live import View
from mstar.evolve.execution.cascade import Evaluator, Target
from mstar.evolve.store.run_store import ProgramRecord, RunStore
from mstar.evolve.store.scores import ScoreBook


@dataclass
class RunState:
    config: EvolveConfig
    run_dir: Path
    store: RunStore
    book: ScoreBook
    evaluator: Evaluator
    view: View
    ids: dict[str, list[str]]  # split -> episode ids
    programs: dict[str, ProgramRecord]  # every program of the run, in the order they were made
    seeds: list[ProgramRecord]
    stop_reason: str | None
    t0: float  # monotonic start of this session
    evaluations: Callable[[], int]  # episode evaluations of the whole run so far
    stopper: Any = None  # the run's Stopper: told the final step's deadline
    best_id: str | None = None
    suites: list[str] = field(default_factory=list)  # a joint run's suite labels (each has its own row too)
    transfer: dict[str, str] = field(default_factory=dict)  # --transfer task -> the split scored ("test" | "all")

    def score(self, pid: str, split: str) -> float | None:
        ids = self.ids[split]
        return self.book.score(pid, split, ids) if ids else None

    def train(self, pid: str) -> float | None:
        return self.book.score(pid, "train", self.ids["train"])

    def probe_values(self, pid: str, split: str) -> dict[str, float]:
        return self.book.probe_values(pid, split, self.ids[split])

    def target(self, pid: str) -> Target:
        rec = self.programs[pid]
        return Target(pid, rec.source, rec.knobs)

    def write_best(self, note: str) -> None:
        write_best(self.store, self.config.run_id, self.programs[self.best_id] if self.best_id else None, note)


def write_best(store: RunStore, run_id: str, rec: ProgramRecord | None, note: str) -> None:
    """``best.py``: the program with a header saying which run made it and why it is the best."""
    if rec is not None:
        store.write_best(rec.source, rec.knobs, f"mstar run {run_id}: {rec.id} ({rec.name}); {note}")
