"""Islands: separate sub-populations that evolve apart and exchange their best every few generations.

Each island holds at most ``island_size`` programs, ranked by their train score; a newcomer that
pushes an island over its size evicts the worst (on a tie, the newest goes: incumbents keep their
place, which keeps the search from churning between equals). With ``prefer_shorter`` a tie (scores
equal to 1e-9) first goes to the shorter program (its normalised source's length): among equals the
lean one ranks higher, breeds more and survives, against the bloat transplants accumulate. Migration is a ring: the best program
of island i is copied into island i+1. Everything here is a pure function of the order of calls, so
replaying the store's history rebuilds exactly the same population.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Migration:
    program: str
    source: int
    target: int


@dataclass
class Population:
    n_islands: int
    island_size: int
    islands: list[list[str]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    children: dict[str, int] = field(default_factory=dict)
    prefer_shorter: bool = False
    sizes: dict[str, int] = field(default_factory=dict)
    _age: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.islands:
            self.islands = [[] for _ in range(self.n_islands)]

    def _rank_key(self, pid: str) -> tuple[float, ...]:
        if self.prefer_shorter:
            return (-round(self.scores[pid], 9), self.sizes.get(pid, 0), self._age[pid])
        return (-self.scores[pid], self._age[pid])

    def add(self, island: int, pid: str, score: float, size: int | None = None) -> list[str]:
        """Put ``pid`` on ``island``; returns the ids evicted (possibly ``pid`` itself). ``size``: the
        program's length, the tie-break of ``prefer_shorter``."""
        self.scores[pid] = score
        if size is not None:
            self.sizes.setdefault(pid, size)
        self._age.setdefault(pid, len(self._age))
        self.children.setdefault(pid, 0)
        members = self.islands[island]
        if pid in members:
            return []
        members.append(pid)
        members.sort(key=self._rank_key)
        evicted = members[self.island_size:]
        del members[self.island_size:]
        return evicted

    def note_child(self, parents: list[str]) -> None:
        for p in parents:
            self.children[p] = self.children.get(p, 0) + 1

    def best(self, island: int | None = None) -> str | None:
        ids = self.islands[island] if island is not None else self.all_ids()
        return min(ids, key=self._rank_key) if ids else None

    def all_ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for members in self.islands:
            for pid in members:
                seen.setdefault(pid, None)
        return list(seen)

    def median(self) -> float | None:
        vals = [self.scores[p] for p in self.all_ids()]
        return statistics.median(vals) if vals else None

    def migrate(self) -> list[Migration]:
        """Ring migration of each island's best; islands' bests are taken before anything moves."""
        if self.n_islands < 2:
            return []
        bests = [self.best(i) for i in range(self.n_islands)]
        moved = []
        for i, pid in enumerate(bests):
            target = (i + 1) % self.n_islands
            if pid is not None and pid not in self.islands[target]:
                evicted = self.add(target, pid, self.scores[pid])
                if pid not in evicted:
                    moved.append(Migration(pid, i, target))
        return moved

    def island_of(self, pid: str) -> list[int]:
        return [i for i, members in enumerate(self.islands) if pid in members]
