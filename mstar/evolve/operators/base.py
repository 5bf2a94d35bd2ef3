"""The operator protocol: how the engine asks for a child program and what it gets back.

The engine owns selection, evaluation and the store; an operator only turns parent programs (with
what is known about how they failed) into one proposed child. Operators never evaluate on test data
and never write to the store; ``tune`` evaluates through ``ctx.score_minibatch`` only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class MinibatchScore(float):
    """A trial's score on the tuning minibatch, a plain float to every caller; in a joint run it also
    carries each suite's score (``suites``, empty for one suite), so ``tune`` can refuse trades between
    suites."""

    suites: dict[str, float]

    def __new__(cls, value: float, suites: dict[str, float] | None = None) -> MinibatchScore:
        obj = super().__new__(cls, value)
        obj.suites = dict(suites or {})
        return obj


class FailedProbe(BaseModel):
    """One missed probe of a parent, diagnosed at the stage where it failed (docs/ARCHITECTURE.md#scoring)."""

    probe_id: str
    episode_id: str
    category: str
    question: str
    # not_stored | not_retrieved | cut_by_budget | answered_wrong | over_budget | error
    stage: str
    recall: float | None = None
    evidence_texts: list[str] = Field(default_factory=list)
    context_excerpt: str = ""
    answer: str | None = None
    # The tail of the read's error (stage error / over_budget): its traceback names the failing component.
    error: str | None = None


class LineageEntry(BaseModel):
    program_id: str
    operator: str
    score: float | None
    parent_score: float | None
    note: str = ""

    @property
    def regression(self) -> bool:
        return self.score is not None and self.parent_score is not None and self.score < self.parent_score


class ParentView(BaseModel):
    """What an operator may know about a parent."""

    id: str
    name: str
    source: str
    knobs: dict[str, Any] = Field(default_factory=dict)  # current knob values (tuned defaults)
    island: int = 0
    score: float | None = None  # the selection metric on the train screen / train split
    by_category: dict[str, float] = Field(default_factory=dict)
    failures: list[FailedProbe] = Field(default_factory=list)
    lineage: list[LineageEntry] = Field(default_factory=list)


class Proposal(BaseModel):
    """A child program. ``knobs`` are values for its KNOBS (None: the source's defaults)."""

    source: str
    knobs: dict[str, Any] | None = None
    operator: str
    parents: list[str]
    note: str = ""  # what changed and why, shown in the lineage log and the report
    llm_calls: int = 0


class OperatorFailed(Exception):
    """The operator could not produce a valid child; ``reason`` is recorded, the run goes on."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class OperatorContext(BaseModel):
    """Everything an operator may use besides its parents."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    rng: random.Random
    # Seed library: name -> source (the parts bin of `structural`).
    seeds: dict[str, str]
    # Scores a (source, knobs) on the tuning minibatch of train episodes; higher is better. The engine's
    # returns a MinibatchScore (each suite's score too, in a joint run).
    score_minibatch: Callable[[str, dict[str, Any]], float] | None = None
    # The host LLM (the broker's, with caching and budget), or None offline.
    llm: Callable[..., str] | None = None
    # A best sibling / best program of another island, as a reference for reflective operators.
    reference: ParentView | None = None
    budget_tokens: int = 1024
    options: dict[str, Any] = Field(default_factory=dict)
    # The run's sandbox backend (the one --sandbox chose): every child's smoke run goes through it
    # (mstar.harness.validate). None outside a run: the validator then uses the process sandbox.
    sandbox: Any = None


class Operator(Protocol):
    name: str
    needs_llm: bool
    arity: int  # number of parents it takes (1, or 2 for crossover)

    def propose(self, parents: list[ParentView], ctx: OperatorContext) -> Proposal:
        """Return a child that passes the harness validator, or raise ``OperatorFailed``."""
