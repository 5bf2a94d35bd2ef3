"""Drive a harness through episodes on a sandbox backend and score every probe on the host (DESIGN §6-7).

Order of calls per episode: ``Memory(toolkit, knobs)``; events are written in stream order, in batches;
``manage("session_end")`` right after the last event of each session; each probe is read after the
number of events it is scheduled at (``Probe.position``, default: after all); ``dump()`` at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from mstar.episodes import Episode
from mstar.errors import CandidateFailure
from mstar.harness.contract import check_dump, check_read_result
from mstar.harness.knobs import resolve
from mstar.harness.loader import HarnessProgram
from mstar.sandbox.base import SandboxBackend, SessionLimits
from mstar.scoring.evidence import EventIndex, ProbeScore, score_read
from mstar.toolkit import Toolkit


class EvalConfig(BaseModel):
    budget: int = 1024
    write_batch: int = 256
    collect_dump: bool = True
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
    schedule = dict(episode.schedule())
    result = EpisodeResult(episode_id=episode.id, probes=[])
    done: set[str] = set()
    t_start = time.perf_counter()
    session = None
    try:
        session = backend.open(program, values, toolkit, config.limits, labels)

        def ask(pos: int) -> None:
            for probe in schedule.get(pos, []):
                raw, ms = session.read(probe.as_query(config.budget))
                try:
                    res = check_read_result(raw)
                except CandidateFailure as e:
                    result.probes.append(ProbeScore(probe.id, probe.category, 0, ms, error=f"{e.reason}: {e.detail}"))
                    done.add(probe.id)
                    continue
                result.probes.append(score_read(probe, res, index, config.budget, ms))
                done.add(probe.id)

        ask(0)
        for a, b, ends_session in _segments(episode):
            for s in range(a, b, config.write_batch):
                batch = [e.as_input() for e in episode.events[s : min(b, s + config.write_batch)]]
                result.write_ms.extend(session.write(batch))
            if ends_session:
                result.manage_ms.append(session.manage("session_end"))
            ask(b)
        if config.collect_dump:
            raw_dump = session.dump()
            result.dump = check_dump(raw_dump) if raw_dump is not None else None
    except CandidateFailure as e:
        result.failure = (e.reason, e.detail)
        for probe in episode.probes:
            if probe.id not in done:
                ps = ProbeScore(probe.id, probe.category, 0, 0.0, error=f"{e.reason}: {e.detail}")
                if probe.scored_for_recall:
                    ps.evidence_recall, ps.ndcg = 0.0, 0.0
                if probe.evidence_sessions and not probe.abstention:
                    ps.session_recall = 0.0
                if probe.answer not in (None, ""):
                    ps.answer_containment = 0.0
                result.probes.append(ps)
    finally:
        if session is not None:
            session.close()
        result.wall_s = time.perf_counter() - t_start
    return result


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
) -> list[EpisodeResult]:
    out = []
    for ep in episodes:
        r = evaluate_episode(program, ep, backend, toolkit, knobs, config, labels)
        out.append(r)
        if progress:
            progress(r)
    return out
