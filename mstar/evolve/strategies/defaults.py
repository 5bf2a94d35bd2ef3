"""The strategies of one run, built from its config unless the caller injects others."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from mstar.evolve.core.config import EvolveConfig
from mstar.evolve.store.scores import ScoreBook
from mstar.evolve.strategies.archive import ParetoArchive
from mstar.evolve.strategies.base import BehaviourKey, MigrationPolicy, OperatorChoice, ParentPolicy
from mstar.evolve.strategies.behaviour import BEHAVIOUR_KEYS
from mstar.evolve.strategies.migration import IslandReset, RingMigration
from mstar.evolve.strategies.novelty import NoveltyFilter
from mstar.evolve.strategies.operator_choice import WeightedOperators
from mstar.evolve.strategies.parents import PARENT_POLICIES


@dataclass
class Strategies:
    parents: ParentPolicy
    operators: OperatorChoice
    migration: MigrationPolicy
    island_reset: IslandReset
    # Built once the run knows its screen episodes and score book.
    behaviour: Callable[[ScoreBook, list[str]], BehaviourKey]
    archive: Callable[[], ParetoArchive] = ParetoArchive
    # The code near-duplicate filter, built from the run's ``novelty_threshold``.
    novelty: Callable[[float], NoveltyFilter] = NoveltyFilter

    @classmethod
    def from_config(cls, cfg: EvolveConfig) -> Strategies:
        # novelty=false (ablations): neither the code filter nor a behavioural look rejects a child; only
        # a program already tried (same id) is not evaluated again.
        return cls(parents=PARENT_POLICIES[cfg.parent_policy](archive_rate=cfg.archive_rate),
                   operators=WeightedOperators(cfg.operators), migration=RingMigration(cfg.migrate_every),
                   island_reset=IslandReset(cfg.island_reset_every),
                   behaviour=BEHAVIOUR_KEYS[cfg.behaviour_key if cfg.novelty else "code"],
                   novelty=partial(NoveltyFilter, enabled=cfg.novelty))
