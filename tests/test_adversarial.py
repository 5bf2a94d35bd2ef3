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
FIXTURE_LME = Path(__file__).parent / "fixtures" / "longmemeval_small.json"


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
    else:
        assert got <= 0.05, (trick, suite, got)


def test_has_answer_filter_finds_no_gold_on_longmemeval():
    """The 25-line harness that kept LongMemEval's has_answer turns scored 1.000 on this fixture."""
    eps = get_task("longmemeval", data=FIXTURE_LME).episodes("all")
    assert recall(HERE / "has_answer_filter.py", eps) == 0.0
    assert recall("bm25", eps) > 0.0
