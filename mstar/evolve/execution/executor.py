"""Executors: run evaluation jobs, one (program, episode, split) each, and yield results as they finish.

The protocol is deliberately the shape of ``ray.wait``: ``map`` takes a batch of jobs and yields each
result when it is ready, in any order. The engine stores every result the moment it arrives, so a
kill loses only the jobs still in flight, and it may stop consuming the iterator at any time (Ctrl-C,
stop file): an executor must then not start new jobs (a generator that is not advanced runs nothing).

``inline`` runs jobs one after the other in this process. A Ray executor (docs/ARCHITECTURE.md#executors) submits every job
as a task, then loops on ``ray.wait(pending, num_returns=1)`` and yields; ``close`` cancels leftovers.

A job stopped by an infrastructure fault (``InfrastructureError``: the engine went away) is never
yielded as a result: the executor waits it out and runs the job again (``mstar.faults``), or lets the
error through when the fault outlasts the run's patience.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from mstar.episodes import Episode
from mstar.errors import InfrastructureError
from mstar.evaluate import EpisodeResult, EvalConfig, evaluate_episode
from mstar.faults import FaultPause
from mstar.harness.loader import HarnessProgram, from_source
from mstar.toolkit import Toolkit


@dataclass(frozen=True)
class EvalJob:
    program_id: str
    source: str
    knobs: dict[str, Any] = field(hash=False, compare=False)
    episode_id: str = ""
    split: str = "train"
    # Opaque to the executor: lets the caller route results (e.g. "minibatch" trials never reach the store).
    tag: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.program_id, self.split, self.episode_id)


@dataclass
class JobResult:
    job: EvalJob
    result: EpisodeResult
    llm_tokens: int = 0
    llm_cost: float = 0.0


class Executor(Protocol):
    name: str

    def map(self, jobs: Iterable[EvalJob]) -> Iterator[JobResult]:
        """Run ``jobs``; yield each result as it finishes. Stop starting jobs once the caller stops iterating."""

    def close(self) -> None:
        """Release workers; cancel jobs that were submitted but not consumed."""


class LLMMeter(Protocol):
    """What an executor reads to attribute LLM use to a job (the run's ledger)."""

    tokens: int
    spent: float


class InlineExecutor:
    """Sequential, in process. The reference executor and the one tests use."""

    name = "inline"

    def __init__(self, episodes: dict[str, Episode], backend: Any, toolkit: Toolkit, config: EvalConfig,
                 meter: LLMMeter | None = None, labels: dict[str, str] | None = None,
                 on_start: Callable[[EvalJob], None] | None = None, faults: FaultPause | None = None):
        self.episodes = episodes
        self.faults = faults or FaultPause()
        self.backend = backend
        self.toolkit = toolkit
        self.config = config
        self.meter = meter
        self.labels = labels or {}
        self.on_start = on_start
        # Parsing + static checks of a source cost more than a small episode; children are re-used a lot.
        self._programs: OrderedDict[str, HarnessProgram] = OrderedDict()

    def program(self, job: EvalJob) -> HarnessProgram:
        p = self._programs.get(job.program_id)
        if p is None:
            p = from_source(job.source, name=job.program_id, path=f"<program {job.program_id}>")
            self._programs[job.program_id] = p
            if len(self._programs) > 64:
                self._programs.popitem(last=False)
        else:
            self._programs.move_to_end(job.program_id)
        return p

    def map(self, jobs: Iterable[EvalJob]) -> Iterator[JobResult]:
        probe = getattr(self.backend, "healthy", None)
        for job in jobs:
            if self.on_start:
                self.on_start(job)
            t0, c0 = (self.meter.tokens, self.meter.spent) if self.meter else (0, 0.0)
            while True:
                try:
                    res = evaluate_episode(self.program(job), self.episodes[job.episode_id], self.backend,
                                           self.toolkit, job.knobs, self.config, labels=self.labels)
                    break
                except InfrastructureError as e:
                    self.faults.fault(e, job.key, probe)  # returns when it is time to retry, else raises
            self.faults.ok(job.key)
            t1, c1 = (self.meter.tokens, self.meter.spent) if self.meter else (0, 0.0)
            yield JobResult(job, res, llm_tokens=t1 - t0, llm_cost=c1 - c0)

    def close(self) -> None:
        self._programs.clear()


EXECUTORS = ("inline", "ray")


def make_executor(name: str, **kw: Any) -> Executor:
    if name == "inline":
        return InlineExecutor(**kw)
    if name == "ray":  # imported here: Ray is heavy and optional for `import mstar`
        from mstar.evolve.execution.ray_executor import RayExecutor

        return RayExecutor(**kw)
    from mstar.errors import UsageError

    raise UsageError(f"--executor: unknown executor {name!r} (available: {', '.join(EXECUTORS)})")
