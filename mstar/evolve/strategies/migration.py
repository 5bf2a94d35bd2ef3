"""Migration between islands, and the reset of the weaker half.

``RingMigration``: every ``every`` generations, the best program of island i is copied into island
i+1 (islands' bests are taken before anything moves).

``IslandReset`` (off by default; ``island_reset_every``): every N generations the weaker half of the
islands (ranked by their best program's score; ties: the higher index is weaker) is emptied and
re-seeded with the best programs of the stronger half, one each, round robin. An island that spent N
generations behind the others gets a fresh start from what works, instead of breeding on from a local
optimum; the stronger half keeps its diversity. Both are pure functions of the population, so a
replayed run resets exactly where the killed one did.
"""

from __future__ import annotations

from dataclasses import dataclass

from mstar.evolve.strategies.population import Migration, Population


class RingMigration:
    def __init__(self, every: int):
        self.every = every

    def migrate(self, population: Population, generation: int) -> list[Migration]:
        return population.migrate() if generation % self.every == 0 else []


@dataclass
class Reset:
    island: int
    seeded_with: str
    dropped: list[str]


class IslandReset:
    def __init__(self, every: int | None):
        self.every = every or None

    def due(self, generation: int) -> bool:
        return self.every is not None and generation > 0 and generation % self.every == 0

    def reset(self, population: Population, generation: int) -> list[Reset]:
        if not self.due(generation) or population.n_islands < 2:
            return []
        bests = {i: population.best(i) for i in range(population.n_islands)}
        ranked = sorted(bests, key=lambda i: (population.scores[bests[i]] if bests[i] else float("-inf"), -i),
                        reverse=True)
        half = population.n_islands // 2
        strong, weak = ranked[: population.n_islands - half], ranked[population.n_islands - half:]
        donors = [bests[i] for i in strong if bests[i] is not None]
        if not donors:
            return []
        out = []
        for k, island in enumerate(sorted(weak)):
            pid = donors[k % len(donors)]
            dropped = list(population.islands[island])
            population.islands[island] = []
            population.add(island, pid, population.scores[pid])
            out.append(Reset(island, pid, dropped))
        return out
