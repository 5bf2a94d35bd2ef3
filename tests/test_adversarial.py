"""The adversarial suite: harnesses that try to buy evidence recall without retrieving anything.

Each file in tests/adversarial/ is run through the real evaluation path (evaluate_episode, inline backend:
the sandbox is not what is under test here) on LoCoMo test and on the synthetic test split. The pure tricks
must score <= 0.05; the tricks built on an honest bm25 context (id padding, duplicated and substring items)
must earn nothing over what the same turns earn with honest sources.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mstar.evaluate import EvalConfig, evaluate
from mstar.harness.loader import load_program
from mstar.sandbox.inline import InlineBackend
from mstar.scoring.aggregate import summarize
from mstar.tasks.registry import get_task
from mstar.toolkit import Toolkit

HERE = Path(__file__).parent / "adversarial"
TRICKS = sorted(p.stem for p in HERE.glob("*.py"))
# Built on whole turns shown honestly: the trick may add nothing to what the same context earns when each
# shown turn cites only its own id (the harness's ``honest`` knob).
ON_HONEST_CONTEXT = {"id_padding", "duplicated_items", "substring_items", "superset_citing"}
# Shows some turns whole by accident (a turn whose words are all new survives the de-duplication intact):
# it may earn what those verbatim turns earn (the plain count below), never more than 0.01 over it unless
# the whole is at most 0.05 (the rule's 5 % edit margin credits a long turn missing one repeated word).
SHOWS_SOME_TURNS_WHOLE = {"first_occurrence_bag"}
FIXTURE_LME = Path(__file__).parent / "fixtures" / "longmemeval_small.json"


def verbatim_count(spec: str | Path, episodes) -> float:
    """Evidence recall by the plain rule: an evidence turn counts when its word tokens appear, in order
    and contiguous, in the context (whatever the items say), and the context fits the budget."""
    import mstar.evaluate as ev
    from mstar.tokens import words

    plain: list[float] = []
    real = ev.score_read

    def scoring(probe, result, index, budget, read_ms=0.0):
        ps = real(probe, result, index, budget, read_ms)
        if ps.evidence_recall is not None:
            ctx = f" {' '.join(words(result.context))} "
            plain.append(0.0 if ps.error else sum(
                1 for e in probe.evidence if f" {' '.join(words(index.events[e].text))} " in ctx) / len(probe.evidence))
        return ps

    ev.score_read = scoring
    try:
        evaluate(load_program(spec), episodes, InlineBackend(), Toolkit(), config=EvalConfig(budget=1024))
    finally:
        ev.score_read = real
    return sum(plain) / len(plain)


def recall(spec: str | Path, episodes, knobs: dict | None = None) -> float:
    results = evaluate(load_program(spec), episodes, InlineBackend(), Toolkit(), knobs=knobs,
                       config=EvalConfig(budget=1024))
    assert all(r.failure is None for r in results), [r.failure for r in results]
    return summarize(results)["overall"]["evidence_recall"]


@pytest.fixture(scope="module")
def suites(locomo_path):
    return {
        "locomo": get_task("locomo", data=locomo_path).episodes("test"),
        "synthetic": get_task("synthetic").episodes("test"),
    }


@pytest.fixture(scope="module")
def honest(suites):
    return {name: recall("bm25", eps) for name, eps in suites.items()}


def test_the_suite_is_all_there():
    assert len(TRICKS) >= 15 and {"bag_of_words", "reversed_turns", "capitalised", "has_answer_filter"} <= set(TRICKS)


@pytest.mark.parametrize("trick", TRICKS)
@pytest.mark.parametrize("suite", ["locomo", "synthetic"])
def test_trick_scores_nothing(trick, suite, suites, honest):
    got = recall(HERE / f"{trick}.py", suites[suite])
    assert honest[suite] > 0.5
    if trick in ON_HONEST_CONTEXT:
        same_context = recall(HERE / f"{trick}.py", suites[suite], {"honest": True})
        assert got <= same_context + 1e-9 and got < honest[suite] + 1e-9, (trick, suite, got, same_context)
    elif trick in SHOWS_SOME_TURNS_WHOLE:
        shown = verbatim_count(HERE / f"{trick}.py", suites[suite])
        # Either nothing to speak of, or no more than the turns it happens to show whole.
        assert (got <= 0.05 or got <= shown + 0.01) and got < honest[suite] / 3, (trick, suite, got, shown)
    else:
        assert got <= 0.05, (trick, suite, got)


def test_has_answer_filter_finds_no_gold_on_longmemeval():
    """The 25-line harness that kept LongMemEval's has_answer turns scored 1.000 on this fixture."""
    eps = get_task("longmemeval", data=FIXTURE_LME).episodes("all")
    assert recall(HERE / "has_answer_filter.py", eps) == 0.0
    assert recall("bm25", eps) > 0.0
