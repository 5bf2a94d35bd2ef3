"""Drive a harness through episodes on a sandbox backend and score every probe on the host (docs/ARCHITECTURE.md#probe-flow).

Order of calls per episode: ``Memory(toolkit, knobs)``; events are written in stream order, in batches;
``manage("session_end")`` right after the last event of each session; each probe is read after the
number of events it is scheduled at (``Probe.position``, default: after all); ``dump()`` at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from mstar.episodes import Episode
from mstar.errors import BudgetExceeded, CandidateFailure, InfrastructureError, LLMError
from mstar.faults import FaultPause
from mstar.harness.contract import check_dump, check_read_result
from mstar.harness.knobs import resolve
from mstar.harness.loader import HarnessProgram
from mstar.sandbox.base import SandboxBackend, SessionLimits, read_many
from mstar.scoring.evidence import EventIndex, ProbeScore, score_read
from mstar.scoring.qa import answer_and_judge
from mstar.toolkit import Toolkit
from mstar.visible import EpisodeView

EXCERPT_CHARS = 600  # of a missed probe's context, kept for diagnosis and reflection


class EvalConfig(BaseModel):
    budget: int = 1024
    write_batch: int = 256
    collect_dump: bool = True
    # A missed probe is read again with ``budget * diagnose_factor`` tokens (0: never), so diagnosis can
    # tell evidence the harness ranked but cut at the budget from evidence it never ranked.
    diagnose_factor: int = 0
    # LLM mode (needs a toolkit with an LLM): "f1" adds the answer step and token F1, "judge" also the
    # LLM judge (mstar.scoring.qa). "off" keeps evaluation offline.
    qa: str = "off"
    limits: SessionLimits = SessionLimits()


@dataclass
class EpisodeResult:
    episode_id: str
    probes: list[ProbeScore]
    write_ms: list[float] = field(default_factory=list)
    manage_ms: list[float] = field(default_factory=list)
    failure: tuple[str, str] | None = None  # (reason, detail)
    dump: list[dict[str, Any]] | None = None
    wall_s: float = 0.0
    # Where the wall time went (ms): opening and closing the session (sandbox start and stop), scoring the
    # reads on the host, and the harness's own time in the diagnosis re-reads at the wider budget.
    open_ms: float = 0.0
    close_ms: float = 0.0
    score_ms: float = 0.0
    diag_read_ms: float = 0.0


def _segments(episode: Episode) -> list[tuple[int, int, bool]]:
    """Cut the event stream into (start, end, ends_session) runs at session ends and probe positions."""
    n = len(episode.events)
    cuts = {0, n}
    for i in range(1, n):
        if episode.events[i].session != episode.events[i - 1].session:
            cuts.add(i)
    cuts.update(pos for pos, _ in episode.schedule())
    pts = sorted(cuts)
    segs = []
    for a, b in zip(pts, pts[1:], strict=False):
        ends = b == n or episode.events[b].session != episode.events[b - 1].session
        segs.append((a, b, ends))
    return segs


def evaluate_episode(
    program: HarnessProgram,
    episode: Episode,
    backend: SandboxBackend,
    toolkit: Toolkit,
    knobs: dict[str, Any] | None = None,
    config: EvalConfig | None = None,
    labels: dict[str, str] | None = None,
) -> EpisodeResult:
    config = config or EvalConfig()
    values = resolve(program.knob_specs, knobs)
    index = EventIndex.of(episode.events)
    view = EpisodeView(episode)  # the only source of what reaches write() and read()
    schedule = {pos: view.read_order(probes) for pos, probes in episode.schedule()}
    result = EpisodeResult(episode_id=episode.id, probes=[])
    done: set[str] = set()
    qa_on = config.qa != "off" and toolkit.has_llm
    t_start = time.perf_counter()
    session = None
    # This episode's toolkit: the candidate's calls attributed to it, its quotas counted (see Toolkit).
    toolkit = toolkit.scoped(program.name) if hasattr(toolkit, "scoped") else toolkit

    def guard() -> None:
        # A quota the candidate exhausted fails it even if its code caught the error; the run's budget
        # running out ends the evaluation unscored (BudgetExceeded: the engine stops, nothing is stored).
        hit = getattr(toolkit, "budget_hit", None)
        if hit is not None:
            raise BudgetExceeded(str(hit))
        failure = getattr(toolkit, "failure", None)
        if failure is not None:
            raise CandidateFailure(failure.reason, failure.detail)

    try:
        t_open = time.perf_counter()
        session = backend.open(program, values, toolkit, config.limits, labels)
        result.open_ms = (time.perf_counter() - t_open) * 1000
        guard()

        def ask(pos: int) -> None:
            probes = schedule.get(pos, [])
            if not probes:
                return
            # One round trip for all the probes due here: a sandbox round trip costs more than a read.
            try:
                answers = read_many(session, [view.query(p, config.budget) for p in probes])
            except CandidateFailure as e:
                take(probes, getattr(e, "partial", []))  # the reads before the failure count
                raise
            take(probes, answers)

        def take(probes: list, answers: list[tuple[Any, float]]) -> None:
            missed = []
            for probe, (raw, ms) in zip(probes, answers, strict=False):
                try:
                    res = check_read_result(raw)
                except CandidateFailure as e:
                    if e.reason == "context_too_long":
                        raise
                    # A junk answer scores 0 where the probe is scored, like a miss: never left out.
                    result.probes.append(failed_score(probe, f"{e.reason}: {e.detail}", ms, qa_on))
                    done.add(probe.id)
                    continue
                t_score = time.perf_counter()
                ps = score_read(probe, res, index, config.budget, ms)
                result.score_ms += (time.perf_counter() - t_score) * 1000
                if qa_on and not ps.error:
                    answer_step(ps, probe, res.context)
                elif qa_on:
                    zero_qa(ps, probe)
                recall_missed = ps.evidence_recall is not None and ps.evidence_recall < 1.0
                if recall_missed or (qa_on and not ps.error):  # kept for diagnosis ("answered wrong" too)
                    ps.context_excerpt = res.context[:EXCERPT_CHARS]
                if recall_missed and config.diagnose_factor > 1 and not ps.error:
                    missed.append((probe, ps))
                result.probes.append(ps)
                done.add(probe.id)
            if missed:
                wide_reads(missed)

        def answer_step(ps: ProbeScore, probe: Any, context: str) -> None:
            try:
                qa = answer_and_judge(toolkit.scorer("answer"), program.instructions, context, probe,
                                      judge=config.qa == "judge", judge_llm=toolkit.scorer("judge"))
            except LLMError as e:
                # The model failed (server down, prompt over its window): this probe scores 0 with the
                # reason, never dropped (a harness could otherwise pick which probes count by breaking
                # the answer step) and never the end of the command. (The run's budget running out is
                # not the candidate's doing: BudgetExceeded passes, and the evaluation is not stored.)
                zero_qa(ps, probe)
                ps.qa_error = f"{type(e).__name__}: {str(e)[:300]}"
                return
            ps.answer, ps.qa_f1, ps.qa_judge = qa["answer"], qa["qa_f1"], qa["qa_judge"]
            ps.judge_unusable = qa.get("judge_unusable", False)

        def wide_reads(missed: list) -> None:
            wide = config.budget * config.diagnose_factor
            answers = read_many(session, [view.query(probe, wide) for probe, _ in missed])
            for (probe, ps), (raw, ms) in zip(missed, answers, strict=False):
                result.diag_read_ms += ms
                try:
                    res = check_read_result(raw)
                except CandidateFailure:
                    continue  # junk at a larger budget says nothing about the budgeted read
                t_score = time.perf_counter()
                ps.wide_credited = score_read(probe, res, index, wide).credited
                result.score_ms += (time.perf_counter() - t_score) * 1000

        ask(0)
        guard()
        for a, b, ends_session in _segments(episode):
            for s in range(a, b, config.write_batch):
                batch = [view.event(e) for e in episode.events[s : min(b, s + config.write_batch)]]
                result.write_ms.extend(session.write(batch))
                guard()
            if ends_session:
                result.manage_ms.append(session.manage("session_end"))
                guard()
            ask(b)
            guard()
        if config.collect_dump:
            raw_dump = session.dump()
            result.dump = check_dump(raw_dump) if raw_dump is not None else None
        guard()
        # A clean episode (no probe failed either) may hand its sandbox to the program's next episode;
        # anything else leaves it to ``close()`` below, which kills it.
        release = getattr(session, "release", None)
        if release is not None and not any(p.error for p in result.probes):
            release()
    except CandidateFailure as e:
        result.failure = (e.reason, e.detail)
        for probe in episode.probes:
            if probe.id not in done:
                result.probes.append(failed_score(probe, f"{e.reason}: {e.detail}", 0.0, qa_on))
    finally:
        if session is not None:
            t_close = time.perf_counter()
            session.close()
            result.close_ms = (time.perf_counter() - t_close) * 1000
        result.wall_s = time.perf_counter() - t_start
    return result


def failed_score(probe: Any, error: str, ms: float, qa_on: bool) -> ProbeScore:
    """The score of a probe whose read failed: 0 on every metric that applies to the probe."""
    ps = ProbeScore(probe.id, probe.category, 0, ms, error=error)
    if probe.scored_for_recall:
        ps.evidence_recall, ps.ndcg = 0.0, 0.0
    if probe.evidence_sessions and not probe.abstention:
        ps.session_recall = 0.0
    if probe.answer not in (None, ""):
        ps.answer_containment = 0.0
    if qa_on:
        zero_qa(ps, probe)
    return ps


def zero_qa(ps: ProbeScore, probe: Any) -> None:
    """A probe that failed (over budget, crash) scores 0 on the answer metrics that apply to it."""
    gold = probe.answer is not None and str(probe.answer).strip() != ""
    if gold and not probe.abstention:
        ps.qa_f1 = 0.0
    if gold or probe.abstention:
        ps.qa_judge = 0.0


ProgressFn = Callable[[EpisodeResult], None]


def evaluate(
    program: HarnessProgram,
    episodes: list[Episode],
    backend: SandboxBackend,
    toolkit: Toolkit,
    knobs: dict[str, Any] | None = None,
    config: EvalConfig | None = None,
    progress: ProgressFn | None = None,
    labels: dict[str, str] | None = None,
    faults: FaultPause | None = None,
) -> list[EpisodeResult]:
    """Every episode in turn. An episode stopped by an infrastructure fault (the engine went away) is
    run again once the engine answers (``mstar.faults``); a fault that lasts raises ``InfrastructureError``."""
    faults = faults or FaultPause(log=lambda m: print(f"[mstar] {m}", file=sys.stderr, flush=True))
    probe = getattr(backend, "healthy", None)
    out = []
    for ep in episodes:
        while True:
            try:
                r = evaluate_episode(program, ep, backend, toolkit, knobs, config, labels)
                break
            except InfrastructureError as e:
                faults.fault(e, ep.id, probe)
        faults.ok(ep.id)
        out.append(r)
        if progress:
            progress(r)
    return out
