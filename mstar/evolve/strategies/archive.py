"""The Pareto archive: programs no other program beats on every objective at once (docs/ARCHITECTURE.md#evolution).

Objectives, measured on the full ``train`` split: quality (the run's metric, up), mean context tokens
per probe (down) and LLM cost per probe in USD (down). A program that is as good and cheaper, or
better at the same cost, dominates. The archive keeps every non-dominated program; parents are drawn
from it now and then, so a lean program that is not the best scorer still gets children.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    id: str
    quality: float
    tokens: float
    cost: float = 0.0


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good as ``b`` on every objective and strictly better on one."""
    no_worse = a.quality >= b.quality and a.tokens <= b.tokens and a.cost <= b.cost
    better = a.quality > b.quality or a.tokens < b.tokens or a.cost < b.cost
    return no_worse and better


class ParetoArchive:
    def __init__(self) -> None:
        self.points: dict[str, Point] = {}

    def add(self, p: Point) -> bool:
        """Offer a point; returns whether it is on the front (then every point it dominates leaves)."""
        if p.id in self.points:
            return True
        if any(dominates(q, p) for q in self.points.values()):
            return False
        for q in [q for q in self.points.values() if dominates(p, q)]:
            del self.points[q.id]
        self.points[p.id] = p
        return True

    def front(self) -> list[Point]:
        """Best quality first; ties by fewer tokens, then by id so the order is deterministic."""
        return sorted(self.points.values(), key=lambda q: (-q.quality, q.tokens, q.cost, q.id))

    def __contains__(self, pid: str) -> bool:
        return pid in self.points

    def __len__(self) -> int:
        return len(self.points)
