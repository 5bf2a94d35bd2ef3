"""Turn per-probe scores into the numbers a table or a fitness function shows."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from mstar.scoring.evidence import ProbeScore

QUALITY_METRICS = ("evidence_recall", "ndcg@10", "session_recall", "answer_containment", "qa_f1", "qa_judge")
# The metrics that need the answer step, i.e. an LLM (--model).
LLM_METRICS = ("qa_f1", "qa_judge")


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _p50(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize_probes(probes: list[ProbeScore], write_ms: Iterable[float] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in QUALITY_METRICS:
        vals = [m[name] for m in (p.metrics() for p in probes) if m[name] is not None]
        out[name] = _mean(vals)
    out["context_tokens"] = _mean([float(p.context_tokens) for p in probes])
    out["read_ms_p50"] = _p50([p.read_ms for p in probes if p.error is None])
    out["write_ms_p50"] = _p50(list(write_ms))
    out["probes"] = len(probes)
    out["errors"] = sum(1 for p in probes if p.error)
    # LLM mode: answer steps whose model call failed, and judge verdicts that were neither yes nor no
    # (both scored 0): shown beside the score so a number is never read without them.
    out["qa_errors"] = sum(1 for p in probes if getattr(p, "qa_error", None))
    out["judge_unusable"] = sum(1 for p in probes if getattr(p, "judge_unusable", False))
    return out


def summarize(results: list[Any]) -> dict[str, Any]:
    """``results``: EpisodeResult list -> {"overall": {...}, "by_category": {cat: {...}}, "failures": [...]}."""
    probes = [p for r in results for p in r.probes]
    write_ms = [w for r in results for w in r.write_ms]
    by_cat: dict[str, list[ProbeScore]] = {}
    for p in probes:
        by_cat.setdefault(p.category, []).append(p)
    return {
        "overall": summarize_probes(probes, write_ms),
        "by_category": {c: summarize_probes(ps) for c, ps in sorted(by_cat.items())},
        "episodes": len(results),
        "failures": [
            {"episode": r.episode_id, "reason": r.failure[0], "detail": r.failure[1]} for r in results if r.failure
        ],
    }
