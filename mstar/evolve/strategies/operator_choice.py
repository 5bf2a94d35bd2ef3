"""Operator choice: which operator makes the next child. The run's mix (``--operators``) as weights."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence


class WeightedOperators:
    def __init__(self, weights: Mapping[str, float]):
        self.weights = dict(weights)

    def choose(self, rng: random.Random, names: Sequence[str]) -> str:
        return rng.choices(list(names), weights=[self.weights[n] for n in names], k=1)[0]
