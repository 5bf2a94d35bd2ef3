"""Which component ``structural`` should change, given where the parent's missed probes were lost.

The failure diagnosis (mstar/evolve/execution/diagnosis.py) names, per missed probe, the pipeline stage that
lost its evidence. Following MemEvolve's reading of the design space, each stage points at the
components that can fix it:

- ``not_stored``    -> encode, maintain: what gets written, and what survives consolidation;
- ``not_retrieved`` -> retrieve, index, expand: what gets ranked, and what gets linked to a hit;
- ``cut_by_budget`` -> pack, expand, encode: how much fits (denser packing, fewer added neighbours,
                       shorter records);
- ``over_budget``   -> pack: the context itself did not fit;
- ``error``         -> the component the traceback names (its innermost ``in <component>`` frame),
                       else no evidence;
- ``answered_wrong`` is the INSTRUCTIONS' or the context form's fault, not a component's: no evidence.

Every failure is one unit of blame, split evenly over its stage's components among those a move can
change; a failure with no evidence (or whose components have no move) is spread over all of them.
A floor share (``FLOOR``) is spread uniformly on top, so no component is ever ruled out: the
diagnosis is a sample of a dozen probes and may be wrong, and search needs exploration.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mstar.evolve.operators.base import FailedProbe
from mstar.evolve.operators.components import COMPONENTS

STAGE_COMPONENTS: dict[str, tuple[str, ...]] = {
    "not_stored": ("encode", "maintain"),
    "not_retrieved": ("retrieve", "index", "expand"),
    "cut_by_budget": ("pack", "expand", "encode"),
    "over_budget": ("pack",),
}
FLOOR = 0.2

# A traceback frame inside a component: ``File "<candidate>", line 12, in retrieve``.
_FRAME = re.compile(r"line \d+, in (" + "|".join(COMPONENTS) + r")\b")


def error_component(error: str | None) -> str | None:
    """The component an error's traceback names, innermost frame first; None when none does."""
    frames = _FRAME.findall(error or "")
    return frames[-1] if frames else None


def targets(failure: FailedProbe) -> tuple[str, ...]:
    """The components that could fix this failure; empty when the diagnosis points at none."""
    if failure.stage == "error":
        comp = error_component(failure.error)
        return (comp,) if comp else ()
    return STAGE_COMPONENTS.get(failure.stage, ())


@dataclass(frozen=True)
class Guidance:
    weights: dict[str, float]  # component -> probability, summing to 1
    failures: tuple[FailedProbe, ...]

    def reason(self, comp: str) -> str:
        """Which stage drove choosing ``comp``: the one with most failures pointing at it."""
        counts = Counter(f.stage for f in self.failures if comp in targets(f))
        if not counts:
            return f"exploring (no diagnosed failure points at {comp})"
        # Most failures first; ties in pipeline order, so the note is deterministic.
        stage = min(counts, key=lambda s: (-counts[s], _stage_rank(s)))
        return f"for {stage} ({counts[stage]}/{len(self.failures)})"


def component_weights(failures: Sequence[FailedProbe], available: Iterable[str],
                      floor: float = FLOOR) -> Guidance | None:
    """How likely each of the ``available`` components is to be changed; None when no failure points
    at any of them (no failures, or only answered_wrong / unattributed errors): the caller then
    keeps its uniform choice."""
    avail = [c for c in COMPONENTS if c in set(available)]
    if not avail or not any(set(targets(f)) & set(avail) for f in failures):
        return None
    blame = dict.fromkeys(avail, 0.0)
    for f in failures:
        hit = [c for c in targets(f) if c in blame] or avail
        for c in hit:
            blame[c] += 1.0 / len(hit)
    n = len(failures)
    weights = {c: floor / len(avail) + (1.0 - floor) * blame[c] / n for c in avail}
    return Guidance(weights=weights, failures=tuple(failures))


def _stage_rank(stage: str) -> int:
    order = ("not_stored", "not_retrieved", "cut_by_budget", "over_budget", "error")
    return order.index(stage) if stage in order else len(order)
