"""The protocols the engine's strategies implement, and what they are shown of the search.

Each strategy is one small policy with one decision: which parent to draw, when two programs are the same
point of the search, which operator makes the next child, how islands exchange programs. The engine builds
them from the run's config (``Strategies.from_config``) unless a caller injects its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mstar.evolve.strategies.archive import ParetoArchive
from mstar.evolve.strategies.population import Migration, Population


@dataclass
class SearchView:
    """What a parent policy may read: the islands, the Pareto archive, and each program's value per
    train probe (``episode/probe`` -> value). Programs of the population have every train episode scored."""

    population: Population
    archive: ParetoArchive
    probe_values: Callable[[str], Mapping[str, float]]


class ParentPolicy(Protocol):
    name: str

    def pick(self, rng: random.Random, island: int, exclude: set[str], view: SearchView) -> str:
        """One parent for a child bred on ``island`` (not in ``exclude`` unless nothing else is left)."""


class BehaviourKey(Protocol):
    name: str

    def key(self, pid: str) -> Hashable | None:
        """The program's behaviour on the screen; two programs with the same key are the same point of the
        search (the later one is a neutral variant). None: this key never calls two programs the same."""

    def describe(self, pid: str) -> str:
        """How the program behaved, for the rejection reason."""


class OperatorChoice(Protocol):
    def choose(self, rng: random.Random, names: Sequence[str]) -> str:
        """The operator that makes the next child, among the usable ``names`` (sorted)."""


class MigrationPolicy(Protocol):
    def migrate(self, population: Population, generation: int) -> list[Migration]:
        """Move programs between islands at the end of ``generation``; returns what moved."""
