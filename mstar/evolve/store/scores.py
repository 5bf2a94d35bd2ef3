"""What the engine knows about evaluated programs: per-episode aggregates, kept in memory, rebuilt
from the store on resume. Scores over a set of episodes are probe-weighted means (as `mstar eval`); in a
joint run, the mean over suites of those means (mstar.tasks.joint).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mstar.evaluate import EpisodeResult
from mstar.tasks.joint import joint_score, joint_weights

MAX_FAILURES_KEPT = 40  # per (program, episode): enough to sample from, bounded in memory


@dataclass
class EpisodeAgg:
    probes: int = 0
    q_sum: float = 0.0
    q_n: int = 0
    tokens: float = 0.0
    cost: float = 0.0
    errors: int = 0
    failure: str | None = None  # the episode-level failure reason (crash, timeout ...)
    detail: str = ""
    by_cat: dict[str, list[float]] = field(default_factory=dict)  # cat -> [sum, n]
    failures: list[dict[str, Any]] = field(default_factory=list)  # diagnosed missed probes
    values: dict[str, float] = field(default_factory=dict)  # probe id -> the metric (probes that have one)

    def add_probe(self, metrics: dict[str, Any], metric: str, tokens: int, diagnosis: dict[str, Any] | None,
                  probe: str = "") -> None:
        self.probes += 1
        self.tokens += tokens
        if metrics.get("error"):
            self.errors += 1
        q = metrics.get(metric)
        if q is not None:
            self.q_sum += q
            self.q_n += 1
            self.values[probe] = float(q)
            cat = self.by_cat.setdefault(str(metrics.get("category", "default")), [0.0, 0])
            cat[0] += q
            cat[1] += 1
        if diagnosis and len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(diagnosis)


@dataclass
class Stats:
    quality: float
    tokens: float
    cost: float
    probes: int
    errors: int
    by_category: dict[str, float]
    failure: str | None
    detail: str = ""
    failed_episodes: int = 0


class ScoreBook:
    def __init__(self, metric: str, group: Callable[[str], str] | None = None):
        self.metric = metric
        # A joint run's episode -> its suite (mstar.tasks.joint): quality is then the mean over suites of
        # each suite's probe-weighted mean; None: one suite, the probe-weighted mean.
        self.group = group
        self.aggs: dict[tuple[str, str, str], EpisodeAgg] = {}

    def has(self, program: str, split: str, episode: str) -> bool:
        return (program, split, episode) in self.aggs

    def put(self, program: str, split: str, episode: str, agg: EpisodeAgg) -> None:
        self.aggs[(program, split, episode)] = agg

    def stats(self, program: str, split: str, episodes: Iterable[str]) -> Stats | None:
        """Probe-weighted stats over ``episodes``; None while any of them is not evaluated."""
        parts = []
        by_group: dict[str, tuple[float, int]] = {}
        for ep in episodes:
            a = self.aggs.get((program, split, ep))
            if a is None:
                return None
            parts.append(a)
            g = self.group(ep) if self.group else ""
            acc = by_group.get(g, (0.0, 0))
            by_group[g] = (acc[0] + a.q_sum, acc[1] + a.q_n)
        probes = sum(a.probes for a in parts)
        cats: dict[str, list[float]] = {}
        for a in parts:
            for c, (s, n) in a.by_cat.items():
                acc = cats.setdefault(c, [0.0, 0])
                acc[0] += s
                acc[1] += n
        failed = [a for a in parts if a.failure]
        return Stats(
            quality=joint_score(by_group),
            tokens=sum(a.tokens for a in parts) / probes if probes else 0.0,
            cost=sum(a.cost for a in parts) / probes if probes else 0.0,
            probes=probes,
            errors=sum(a.errors for a in parts),
            by_category={c: s / n for c, (s, n) in sorted(cats.items()) if n},
            failure=failed[0].failure if failed else None,
            detail=failed[0].detail if failed else "",
            failed_episodes=len(failed),
        )

    def score(self, program: str, split: str, episodes: Iterable[str]) -> float | None:
        s = self.stats(program, split, episodes)
        return None if s is None else s.quality

    def suite_scores(self, program: str, split: str, episodes: Iterable[str]) -> dict[str, float]:
        """A joint run's score of each suite over its part of ``episodes`` (the evaluated ones); one suite: {}."""
        if not self.group:
            return {}
        by_group: dict[str, tuple[float, int]] = {}
        for ep in episodes:
            a = self.aggs.get((program, split, ep))
            if a is not None:
                acc = by_group.get(g := self.group(ep), (0.0, 0))
                by_group[g] = (acc[0] + a.q_sum, acc[1] + a.q_n)
        return {g: s / n for g, (s, n) in sorted(by_group.items()) if n}

    def probe_values(self, program: str, split: str, episodes: Iterable[str]) -> dict[str, float]:
        """The metric per probe (``episode/probe``) over the evaluated ones of ``episodes``; probes
        without a value (e.g. abstention for recall) left out, as in the means. In a joint run each value
        is weighted so that their plain mean is the joint objective (``joint_weights``): a paired
        per-probe comparison (the final pick's one-standard-error rule) then measures what ``score`` ranks by."""
        out: dict[str, float] = {}
        for ep in episodes:
            a = self.aggs.get((program, split, ep))
            if a is None:
                continue
            out.update((f"{ep}/{k}", v) for k, v in a.values.items())
        return joint_weights(out, self.group)

    def failures(self, program: str, split: str, episodes: Iterable[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for ep in episodes:
            a = self.aggs.get((program, split, ep))
            if a:
                out.extend(a.failures)
        return out

    def load(self, rows: Iterable[tuple]) -> None:
        """Rebuild from ``RunStore.evaluation_rows()`` (finished episodes only)."""
        for program, split, episode, probe, metrics, tokens, cost, diagnosis in rows:
            agg = self.aggs.setdefault((program, split, episode), EpisodeAgg())
            m = json.loads(metrics)
            if probe == "":
                agg.failure = m.get("failure")
                agg.detail = (m.get("detail") or "")[:300]
                agg.cost += cost
            else:
                agg.add_probe(m, self.metric, tokens, json.loads(diagnosis) if diagnosis else None, probe)


def digest(result: EpisodeResult, metric: str, diagnoses: dict[str, dict[str, Any]],
           llm_cost: float = 0.0, llm_tokens: int = 0) -> tuple[EpisodeAgg, dict[str, Any], list[dict[str, Any]]]:
    """An episode result -> (aggregate, summary row, probe rows) for the book and the store."""
    agg = EpisodeAgg(cost=llm_cost, failure=result.failure[0] if result.failure else None,
                     detail=result.failure[1][:300] if result.failure else "")
    rows = []
    for p in result.probes:
        # context tokens and read ms have their own columns; floats rounded: the store grows by the probe.
        m: dict[str, Any] = {k: round(v, 5) for k, v in p.metrics().items()
                             if v is not None and k not in ("context_tokens", "read_ms")}
        m["category"] = p.category
        if p.error:
            m["error"] = p.error[:300]
        if p.credited:
            m["credited"] = p.credited
        if getattr(p, "qa_error", None):
            m["qa_error"] = p.qa_error[:300]
        if getattr(p, "judge_unusable", False):
            m["judge_unusable"] = 1
        diag = diagnoses.get(p.probe_id)
        agg.add_probe(m, metric, p.context_tokens, diag, p.probe_id)
        rows.append({"probe": p.probe_id, "metrics": m, "tokens": p.context_tokens, "latency": p.read_ms,
                     "diagnosis": diag})
    summary = {
        "failure": result.failure[0] if result.failure else None,
        "detail": result.failure[1][:2000] if result.failure else None,
        "wall_s": result.wall_s,
        "probes": len(result.probes),
        "write_ms_sum": sum(result.write_ms),
        "manage_ms_sum": sum(result.manage_ms),
        # where the rest of wall_s went (mstar.evaluate.EpisodeResult); read_ms is per probe row
        "open_ms": round(result.open_ms, 2), "close_ms": round(result.close_ms, 2),
        "score_ms": round(result.score_ms, 2), "diag_read_ms": round(result.diag_read_ms, 2),
        "llm_cost": llm_cost,
        "llm_tokens": llm_tokens,
        "qa_errors": sum(1 for p in result.probes if getattr(p, "qa_error", None)),
        "judge_unusable": sum(1 for p in result.probes if getattr(p, "judge_unusable", False)),
    }
    return agg, summary, rows
