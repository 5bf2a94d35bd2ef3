"""Parent sampling: weighted by rank (exploit the good) and by how few children a program has
(explore the neglected), the way M* and island-model GP balance the two.

weight(p) = exp(-pressure * rank(p) / (n - 1)) / (1 + children(p))

rank 0 is the best score; with the default pressure 3 the best program is e^3 ~ 20 times as likely
as the worst *before* the children factor, which then halves a program's chance each time it has
fathered as many children again. Ranking, not raw scores: the weights do not depend on the metric's
scale, and a tiny lead is not a landslide.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

DEFAULT_PRESSURE = 3.0


def weights(scores: Sequence[float], children: Sequence[int], pressure: float = DEFAULT_PRESSURE) -> list[float]:
    """Sampling weights of candidates in the given order (ties rank by position: the older first)."""
    n = len(scores)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: (-scores[i], i))
    rank = [0] * n
    for r, i in enumerate(order):
        rank[i] = r
    span = max(1, n - 1)
    return [math.exp(-pressure * rank[i] / span) / (1 + children[i]) for i in range(n)]


def sample(rng: random.Random, ids: Sequence[str], scores: Mapping[str, float], children: Mapping[str, int],
           pressure: float = DEFAULT_PRESSURE, exclude: set[str] | None = None) -> str:
    """One id drawn from ``ids`` (not in ``exclude`` unless nothing else is left)."""
    pool = [i for i in ids if not exclude or i not in exclude] or list(ids)
    if not pool:
        raise ValueError("cannot sample a parent from an empty population")
    w = weights([scores[i] for i in pool], [children.get(i, 0) for i in pool], pressure)
    return rng.choices(pool, weights=w, k=1)[0]
