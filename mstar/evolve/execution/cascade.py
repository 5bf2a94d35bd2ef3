"""Evaluation for the search: run what is missing through the executor, store it, and the cascade.

``Evaluator.ensure`` is the one way the engine scores programs: a (program, split, episode) already
in the store is reused (that is how a resumed run loses no finished evaluation), the rest become
executor jobs whose results are diagnosed, stored (one transaction per episode) and added to the
score book the moment they arrive. ``ensure`` stops consuming results as soon as a stop is asked
for, and says so; the caller then leaves its decisions for the resume.

The cascade (docs/ARCHITECTURE.md#evolution): a child is scored on a small *screen* of train episodes first; only a child
whose screen score is within ``margin`` of its parents' best screen score gets the rest of ``train``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mstar.episodes import Episode
from mstar.errors import BudgetExceeded
from mstar.evolve.core.stops import StopNow
from mstar.evolve.execution.diagnosis import diagnose
from mstar.evolve.execution.executor import EvalJob, Executor, JobResult
from mstar.evolve.operators.base import MinibatchScore
from mstar.evolve.store.run_store import RunStore
from mstar.evolve.store.scores import ScoreBook, digest

if TYPE_CHECKING:  # the cache is imported lazily where it is made
    from mstar.evolve.store.result_cache import ResultCache

log = logging.getLogger(__name__)


class Interrupted(BaseException):  # noqa: N818 - a control-flow signal, like KeyboardInterrupt
    """A stop was asked for inside an operator's minibatch scoring. A BaseException so that an
    operator's ``except Exception`` cannot swallow it; the engine drops the unfinished proposal."""


@dataclass(frozen=True)
class Target:
    """A program to evaluate: what the executor needs to run it."""

    id: str
    source: str
    knobs: dict[str, Any]


class Evaluator:
    def __init__(self, store: RunStore, book: ScoreBook, executor: Executor, episodes: dict[str, Episode],
                 budget: int, should_stop: Callable[[], str | None],
                 on_result: Callable[[JobResult], None] | None = None,
                 on_diagnosis_error: Callable[[str, str], None] | None = None,
                 cache: ResultCache | None = None, cacheable: Callable[[str], bool] | None = None):
        self.store = store
        self.book = book
        self.executor = executor
        self.episodes = episodes
        self.budget = budget
        self.should_stop = should_stop
        self.on_result = on_result
        self.on_diagnosis_error = on_diagnosis_error
        self.diagnosis_errors = 0
        self.evaluations = 0  # episode evaluations run by this process (stored and minibatch)
        self.minibatch_evals = 0  # of the proposal being made; reset by the engine per proposal
        self.budget_stop: str | None = None  # set when the run's LLM budget ran out inside an evaluation
        self.abandoned = 0  # evaluations dropped by a stop past its grace (redone on resume)
        # The engine sets this to its Stopper's: where the main thread may be interrupted by a stop.
        self.abortable: Callable[[], Any] = contextlib.nullcontext
        # Seed results kept across runs (store/result_cache.py; None: not used) and which programs may use
        # them (the library seeds: their source is fixed, a candidate's is not).
        self.cache = cache
        self.cacheable: Callable[[str], bool] = cacheable or (lambda _pid: False)

    def ensure(self, targets: list[Target], split: str, episode_ids: list[str], stoppable: bool = True,
               until: Callable[[], str | None] | None = None) -> bool:
        """Evaluate every target on every episode of ``episode_ids``; False if stopped before the end.
        ``stoppable=False`` (the final val/test step) ignores the run's stops and is bounded by ``until``
        (its own time limit) instead."""
        should_stop = self.should_stop if stoppable else (until or (lambda: None))
        jobs = [EvalJob(t.id, t.source, t.knobs, ep, split)
                for t in targets for ep in episode_ids if not self.book.has(t.id, split, ep)]
        if not jobs:
            return True
        if should_stop():
            return False
        jobs, done = self._from_cache(jobs, should_stop)
        if jobs is None:
            return False
        total = done + len(jobs)
        if not jobs:
            return True
        it = self.executor.map(jobs)
        try:
            while True:
                with self.abortable():  # a stop past its grace may abandon what is in flight here only
                    jr = next(it, None)
                if jr is None:
                    break
                self._record(jr)
                done += 1
                if done < total and should_stop():
                    return False
        except StopNow:
            self.abandoned += total - done
            should_stop()  # records the stop's reason with the engine
            return False
        except BudgetExceeded as e:
            # The run's LLM budget ran out inside an evaluation: that evaluation is not the candidate's
            # failure and is not stored; the run stops here (resumable with a larger budget).
            self.budget_stop = str(e)
            should_stop()  # records the stop's reason with the engine
            return False
        finally:
            close = getattr(it, "close", None)
            if close:
                close()
        return True

    def _from_cache(self, jobs: list[EvalJob], should_stop: Callable[[], str | None]) -> tuple[list[EvalJob] | None, int]:
        """Record the jobs whose result the seed cache holds, as if just evaluated; returns the rest (None
        when a stop came first) and how many were recorded."""
        if self.cache is None:
            return jobs, 0
        rest, done = [], 0
        for job in jobs:
            hit = self.cache.get(job.program_id, self.episodes[job.episode_id]) if self.cacheable(job.program_id) else None
            if hit is None:
                rest.append(job)
                continue
            self._record(JobResult(job, hit[0]), cached=hit[1])
            done += 1
            if should_stop():
                return None, done
        return rest, done

    def _record(self, jr: JobResult, cached: dict[str, dict[str, Any]] | None = None) -> None:
        """Store one result; ``cached``: the diagnoses kept with a result from the seed cache."""
        job, res = jr.job, jr.result
        if cached is not None:
            diags = cached
        else:
            errors = self.diagnosis_errors
            diags = self._diagnose(job, res) if res.failure is None else {}
            if self.cache is not None and self.cacheable(job.program_id) and self.diagnosis_errors == errors:
                self.cache.put(job.program_id, self.episodes[job.episode_id], res, diags)
        agg, summary, rows = digest(res, self.book.metric, diags, jr.llm_cost, jr.llm_tokens)
        self.store.add_episode(job.program_id, job.split, job.episode_id, summary, rows, jr.llm_cost,
                               llm_tokens=jr.llm_tokens)
        self.book.put(job.program_id, job.split, job.episode_id, agg)
        self.evaluations += 1
        if self.on_result:
            self.on_result(jr)

    def _diagnose(self, job: EvalJob, res: Any) -> dict[str, dict[str, Any]]:
        """The missed probes' diagnoses by probe id. A diagnosis bug costs the operators their guidance
        for this episode, not the run its evaluation: it is logged (the run's log and events), not hidden."""
        try:
            found = diagnose(self.episodes[job.episode_id], res, self.budget)
        except Exception as e:  # noqa: BLE001 - reported below; the evaluation itself is sound
            self.diagnosis_errors += 1
            what = f"diagnosis of {job.program_id} on {job.episode_id} failed: {type(e).__name__}: {e}"
            log.warning("%s", what)
            if self.on_diagnosis_error is not None:
                self.on_diagnosis_error(job.program_id, what)
            return {}
        return {fp.probe_id: fp.model_dump() for fp in found}

    def score_minibatch(self, target: Target, episode_ids: list[str]) -> MinibatchScore:
        """Quality of a trial on the tuning minibatch (in a joint run also each suite's, ``.suites``). Not
        stored (trials are not programs of the run) unless the trial is a program the book already knows,
        which is then reused."""
        missing = [ep for ep in episode_ids if not self.book.has(target.id, "train", ep)]
        local = ScoreBook(self.book.metric, group=self.book.group)  # a joint run: the joint objective
        if missing:
            if self.should_stop():
                raise Interrupted
            it = self.executor.map([EvalJob(target.id, target.source, target.knobs, ep, "train", tag="minibatch")
                                    for ep in missing])
            try:
                while True:
                    with self.abortable():
                        jr = next(it, None)
                    if jr is None:
                        break
                    agg, _, _ = digest(jr.result, self.book.metric, {}, jr.llm_cost)
                    local.put(target.id, "train", jr.job.episode_id, agg)
                    self.evaluations += 1
                    self.minibatch_evals += 1
                    if self.on_result:
                        self.on_result(jr)
                    if self.should_stop():
                        raise Interrupted
            except BudgetExceeded as e:
                self.budget_stop = str(e)
                raise Interrupted from None
            except StopNow:
                raise Interrupted from None
            finally:
                close = getattr(it, "close", None)
                if close:
                    close()
        for ep in episode_ids:
            if not local.has(target.id, "train", ep):
                local.put(target.id, "train", ep, self.book.aggs[(target.id, "train", ep)])
        return MinibatchScore(local.score(target.id, "train", episode_ids) or 0.0,
                              local.suite_scores(target.id, "train", episode_ids))


def passes_screen(child_screen: float, parent_screens: list[float], margin: float) -> bool:
    """The cascade's gate: within ``margin`` of the best parent on the screen episodes."""
    return child_screen >= max(parent_screens, default=0.0) - margin - 1e-12


def choose_episodes(train_ids: list[str], seed: int, screen: int, minibatch: int,
                    probes: dict[str, int] | None = None, screen_probes: int | None = None,
                    minibatch_probes: int | None = None) -> tuple[list[str], list[str]]:
    """A fixed screen and a fixed tuning minibatch from ``train``, disjoint while train is big enough
    (tuning on the screen would let every tuned child pass its own exam).

    ``screen_probes`` / ``minibatch_probes`` (with ``probes``: each episode's probe count) grow a set past
    its episode count until it holds that many probes: a suite with one question per episode
    (LongMemEval) says almost nothing about a program on one or two episodes."""
    import random

    order = list(train_ids)
    random.Random(f"{seed}:episodes").shuffle(order)
    n_screen = _grow(order, max(1, min(screen, len(order))), probes, screen_probes)
    screen_ids = order[:n_screen]
    rest = order[n_screen:] or order
    mb = rest[:_grow(rest, max(1, min(minibatch, len(rest))), probes, minibatch_probes)]
    # Keep the train order inside each set: results do not depend on it, but logs read better.
    pos = {e: i for i, e in enumerate(train_ids)}
    return sorted(screen_ids, key=pos.get), sorted(mb, key=pos.get)


def _grow(order: list[str], n: int, probes: dict[str, int] | None, at_least: int | None) -> int:
    """How many of ``order``'s first episodes to take: ``n``, or more until they hold ``at_least`` probes."""
    if not at_least or probes is None:
        return n
    held = sum(probes.get(e, 0) for e in order[:n])
    while n < len(order) and held < at_least:
        held += probes.get(order[n], 0)
        n += 1
    return n
