"""Parent selection policies.

``rank`` (the default): now and then (``archive_rate``) a program of the Pareto archive (quality / tokens
/ cost), else a draw from the island weighted by rank and by how few children a program already has
(``sampling``).

``pareto``: per-instance Pareto selection. A program is a candidate when it is the best of its island on
at least one train probe (ties: every program with the top value counts), and candidates are drawn in
proportion to the number of probes they win. A specialist that alone solves a few probes keeps breeding
however low its mean is, which the rank draw, looking only at the mean, would starve. The archive draw
comes first, as in ``rank``; when no program wins a probe (nothing scored above zero) the policy falls
back to the rank draw.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from mstar.evolve.strategies import sampling
from mstar.evolve.strategies.base import SearchView


def _from_archive(rng: random.Random, exclude: set[str], view: SearchView, rate: float) -> str | None:
    front = [p.id for p in view.archive.front() if p.id not in exclude]
    if front and rng.random() < rate:
        return rng.choice(front)
    return None


def _members(island: int, view: SearchView) -> list[str]:
    return view.population.islands[island] or view.population.all_ids()


class RankParents:
    name = "rank"

    def __init__(self, archive_rate: float = 0.1, pressure: float = sampling.DEFAULT_PRESSURE):
        self.archive_rate = archive_rate
        self.pressure = pressure

    def pick(self, rng: random.Random, island: int, exclude: set[str], view: SearchView) -> str:
        chosen = _from_archive(rng, exclude, view, self.archive_rate)
        if chosen is not None:
            return chosen
        pop = view.population
        return sampling.sample(rng, _members(island, view), pop.scores, pop.children, self.pressure, exclude=exclude)


def probe_wins(ids: Sequence[str], values: Mapping[str, Mapping[str, float]]) -> dict[str, int]:
    """How many probes each of ``ids`` is best on (ties: all of the best win it); probes nobody scores
    above zero are won by nobody (they tell the programs apart in no way)."""
    wins = dict.fromkeys(ids, 0)
    probes = sorted({k for p in ids for k in values[p]})
    for probe in probes:
        top = max((values[p].get(probe, 0.0) for p in ids), default=0.0)
        if top <= 0:
            continue
        for p in ids:
            if values[p].get(probe, 0.0) >= top - 1e-12:
                wins[p] += 1
    return wins


class ParetoParents:
    name = "pareto"

    def __init__(self, archive_rate: float = 0.1):
        self.archive_rate = archive_rate
        self._rank = RankParents(archive_rate=0.0)

    def pick(self, rng: random.Random, island: int, exclude: set[str], view: SearchView) -> str:
        chosen = _from_archive(rng, exclude, view, self.archive_rate)
        if chosen is not None:
            return chosen
        members = _members(island, view)
        pool = [p for p in members if p not in exclude] or list(members)
        values = {p: view.probe_values(p) for p in pool}
        known = [p for p in pool if values[p]]
        wins = probe_wins(known, values)
        cands = [p for p in known if wins[p] > 0]
        if not cands:
            return self._rank.pick(rng, island, exclude, view)
        return rng.choices(cands, weights=[wins[p] for p in cands], k=1)[0]


PARENT_POLICIES = {"rank": RankParents, "pareto": ParetoParents}
