"""Which program a run returns: the one-standard-error rule on ``val``.

Val guards against overfitting; it is not a race to the last probe. LoCoMo's val is one conversation
(158 probes): two programs 0.003 apart there differ by half a probe, well inside its noise. So:

1. the leader is the best program on val (ties: better on train);
2. a program is *tied* with the leader when its paired per-probe difference to the leader on val,
   ``mean(d)``, is at least ``-SE(d)`` (``SE = stdev(d) / sqrt(n)`` over the probes both scored);
3. of the tied programs, the best on train is returned (ties: better on val, then first created).

A program val says is worse (by more than one standard error) is never returned, however good on
train; among those val cannot tell apart, the one trained evidence favours is. Test plays no part.
``--select val`` keeps the strict reading (docs/ARCHITECTURE.md#final-step: the best on val), step 1 alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence


def paired_gap(values: Mapping[str, float], leader: Mapping[str, float]) -> tuple[float, float, int]:
    """(mean, standard error, n) of ``values - leader`` over the probes both scored."""
    common = sorted(values.keys() & leader.keys())
    d = [values[k] - leader[k] for k in common]
    if not d:
        return 0.0, 0.0, 0
    mean = math.fsum(d) / len(d)
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else 0.0
    return mean, se, len(d)


def choose(candidates: Sequence[str], val: Callable[[str], float | None], train: Callable[[str], float | None],
           probes: Callable[[str], Mapping[str, float]], order: Mapping[str, int],
           rule: str = "1se") -> tuple[str | None, list[str]]:
    """(the program to return, the programs tied with the val leader). ``probes(p)``: p's per-probe
    values on val, keyed by probe. ``rule="val"``: the val leader itself, ties on val only."""
    if not candidates:
        return None, []

    def v(p: str) -> float:
        return val(p) or 0.0

    def t(p: str) -> float:
        return train(p) or 0.0

    leader = min(candidates, key=lambda p: (-v(p), -t(p), order[p]))
    if rule == "val":
        return leader, [leader]
    ref = probes(leader)
    tied = []
    for p in candidates:
        if p == leader:
            tied.append(p)
            continue
        mean, se, n = paired_gap(probes(p), ref)
        if n and mean >= -se:
            tied.append(p)
    best = min(tied, key=lambda p: (-t(p), -v(p), order[p]))
    return best, tied
