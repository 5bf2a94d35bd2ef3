"""``structural`` follows the failure diagnosis: the stage -> component policy as a pure function, and the
operator's choices and notes with diagnosed parents (guided, unguided, ablation switch, determinism)."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from mstar.evolve.operators.base import FailedProbe, OperatorContext, OperatorFailed, ParentView
from mstar.evolve.operators.components import COMPONENTS
from mstar.evolve.operators.move_policy import component_weights, error_component
from mstar.evolve.operators.structural import StructuralOperator

HARNESSES = Path(__file__).resolve().parents[1] / "harnesses"
RETRIEVAL = {"retrieve", "index", "expand"}
TRACEBACK = '''error: Traceback (most recent call last):
  File "<candidate>", line 88, in read
    hits = retrieve(query, self.records, self.state, self.toolkit, self.knobs)
  File "<candidate>", line 41, in retrieve
    return top(scores, knobs)
  File "<candidate>", line 17, in top
IndexError: list index out of range'''


def probe(stage: str, i: int = 0, error: str | None = None) -> FailedProbe:
    return FailedProbe(probe_id=f"p{i}", episode_id="e0", category="single", question="q?", stage=stage, error=error)


def mix(**counts: int) -> list[FailedProbe]:
    return [probe(stage, i) for stage, n in counts.items() for i in range(n)]


def approx(d: dict[str, float]) -> dict:
    return {k: pytest.approx(v) for k, v in d.items()}


# --- the policy ---------------------------------------------------------------------------------------

def test_all_not_retrieved_weights_ranking_components():
    g = component_weights(mix(not_retrieved=4), COMPONENTS, floor=0.2)
    # floor 0.2 spread over six components; the other 0.8 split over retrieve / index / expand.
    assert g.weights == approx({"encode": 1 / 30, "index": 0.3, "retrieve": 0.3, "expand": 0.3,
                                "pack": 1 / 30, "maintain": 1 / 30})


def test_a_mix_weights_by_share_and_answered_wrong_spreads_evenly():
    g = component_weights(mix(not_stored=2, over_budget=1, answered_wrong=1), COMPONENTS, floor=0.2)
    # blame: encode 1, maintain 1, pack 1, plus 1/6 each from answered_wrong; weight = 1/30 + 0.2 * blame.
    assert g.weights == approx({"encode": 8 / 30, "maintain": 8 / 30, "pack": 8 / 30,
                                "index": 2 / 30, "retrieve": 2 / 30, "expand": 2 / 30})
    assert sum(g.weights.values()) == pytest.approx(1.0)


def test_blame_goes_only_to_components_a_move_can_change():
    # No donor offers another index or expand: not_retrieved lands on retrieve alone.
    g = component_weights(mix(not_retrieved=3), {"retrieve", "pack"}, floor=0.2)
    assert g.weights == approx({"retrieve": 0.9, "pack": 0.1})
    # cut_by_budget points at pack / expand / encode, none available: no evidence for these moves.
    assert component_weights(mix(cut_by_budget=3), {"retrieve", "index"}) is None


@pytest.mark.parametrize("failures", [[], mix(answered_wrong=5), [probe("error", 0, "timeout: read took 31 s")]])
def test_no_usable_evidence_gives_no_guidance(failures):
    assert component_weights(failures, COMPONENTS) is None


def test_an_error_blames_the_component_its_traceback_names():
    assert error_component(TRACEBACK) == "retrieve"  # the component frame, not the helper or the driver
    assert error_component("IndexError: list index out of range") is None  # "index" in prose is no frame
    g = component_weights([probe("error", 0, TRACEBACK)], COMPONENTS, floor=0.2)
    assert g.weights["retrieve"] == pytest.approx(0.8 + 0.2 / 6)
    assert g.reason("retrieve") == "for error (1/1)"


def test_reason_names_the_stage_with_most_failures_pointing_at_the_component():
    g = component_weights(mix(not_retrieved=3, cut_by_budget=5, not_stored=1, answered_wrong=3), COMPONENTS)
    assert g.reason("expand") == "for cut_by_budget (5/12)"  # expand serves both; budget losses dominate
    assert g.reason("retrieve") == "for not_retrieved (3/12)"
    assert g.reason("maintain") == "for not_stored (1/12)"
    g = component_weights(mix(not_retrieved=2), COMPONENTS)
    assert g.reason("pack") == "exploring (no diagnosed failure points at pack)"


# --- the operator -----------------------------------------------------------------------------------------

def seed_sources() -> dict[str, str]:
    # The four seeds test_op_structural.py uses: more seeds in harnesses/ must not change these checks.
    return {n: (HARNESSES / f"{n}.py").read_text() for n in ("bm25", "bm25_neighbors", "recency", "full_context")}


def propose(parent: str, seed: int, failures: list[FailedProbe], **options):
    seeds = seed_sources()
    ctx = OperatorContext(rng=random.Random(seed), seeds=seeds, options=options)
    view = ParentView(id=parent, name=parent, source=seeds[parent], failures=failures)
    return StructuralOperator().propose([view], ctx)


def moved(note: str) -> str:
    """The component a child's note says was changed (after the guidance prefix, if any)."""
    first = note.split("; ")[0].split(": ", 1)[-1]
    return re.match(r"[+-]?(\w+)", first).group(1)


def test_not_retrieved_failures_steer_children_to_ranking_components():
    failures = mix(not_retrieved=12)
    guided = [propose("bm25", s, failures) for s in range(30)]
    unguided = [propose("bm25", s, failures, guided=False) for s in range(30)]
    hits = sum(moved(c.note) in RETRIEVAL for c in guided)
    assert hits >= 24  # ~0.9 of the weight is on retrieve / index / expand
    assert hits > sum(moved(c.note) in RETRIEVAL for c in unguided)
    for c in guided:
        want = "for not_retrieved (12/12): " if moved(c.note) in RETRIEVAL else "exploring ("
        assert c.note.startswith(want), c.note
    assert not any(c.note.startswith(("for ", "exploring")) for c in unguided)


def test_budget_losses_steer_children_to_packing_components():
    children = [propose("bm25_neighbors", s, mix(cut_by_budget=5, answered_wrong=1)) for s in range(20)]
    assert sum(moved(c.note) in {"pack", "expand", "encode"} for c in children) >= 16
    assert any(c.note.startswith("for cut_by_budget (5/6): pack <- ") for c in children)


def test_without_evidence_the_choice_is_uniform_as_before():
    # No failures, only answered_wrong, and guided=false all take the plain shuffle: the same children.
    for s in range(6):
        plain = propose("bm25", s, [])
        assert plain.note == propose("bm25", s, mix(answered_wrong=4)).note
        off = propose("bm25", s, mix(not_stored=6), guided="false")
        assert (plain.source, plain.note) == (off.source, off.note)
    comps = Counter(moved(propose("bm25", s, []).note) for s in range(30))
    assert len(comps) >= 3  # every kind of move stays reachable


def test_guided_choice_is_deterministic():
    failures = mix(not_stored=3, cut_by_budget=4)
    a, b = propose("bm25_neighbors", 11, failures), propose("bm25_neighbors", 11, failures)
    assert (a.source, a.note) == (b.source, b.note)


def test_a_bad_guided_option_fails_cleanly():
    with pytest.raises(OperatorFailed) as e:
        propose("bm25", 0, mix(not_retrieved=2), guided="sometimes")
    assert e.value.reason == "bad_option"
