"""The `tune` operator against the real evaluator (inline sandbox, a tiny hand-made episode)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from evolve_helpers import make_episode

from mstar.evaluate import EvalConfig
from mstar.evolve.execution.cascade import Evaluator, Interrupted, Target
from mstar.evolve.execution.executor import InlineExecutor
from mstar.evolve.operators.base import OperatorContext, OperatorFailed, ParentView
from mstar.evolve.operators.components import Program
from mstar.evolve.operators.source_edit import set_knob_defaults
from mstar.evolve.operators.tune import TuneOperator
from mstar.evolve.store.run_store import RunStore
from mstar.evolve.store.scores import ScoreBook
from mstar.harness.loader import from_source
from mstar.sandbox.inline import InlineBackend
from mstar.toolkit import Toolkit

HARNESSES = Path(__file__).resolve().parents[1] / "harnesses"
# recency remembering only the last turn: its recall on a 30-turn episode grows with `window`.
FORGETFUL = set_knob_defaults((HARNESSES / "recency.py").read_text(), {"window": 1})


@pytest.fixture
def scorer(tmp_path):
    """``score_minibatch`` as the engine gives it: real evaluations through the executor, counted."""
    ep = make_episode(0)
    store = RunStore(tmp_path / "run")
    book = ScoreBook("evidence_recall")
    executor = InlineExecutor({ep.id: ep}, InlineBackend(), Toolkit(), EvalConfig(budget=1024))
    ev = Evaluator(store, book, executor, {ep.id: ep}, 1024, should_stop=lambda: None)
    calls: list[dict[str, Any]] = []

    def score(source: str, knobs: dict[str, Any]) -> float:
        calls.append(dict(knobs))
        return ev.score_minibatch(Target(f"t{len(calls)}", source, knobs), [ep.id])

    score.calls = calls  # type: ignore[attr-defined]
    score.evaluator = ev  # type: ignore[attr-defined]
    yield score
    store.close()


def tune(source: str, scorer, seed: int = 0, trials: int = 6, knobs: dict | None = None):
    ctx = OperatorContext(rng=random.Random(seed), seeds={}, score_minibatch=scorer, options={"trials": trials})
    return TuneOperator().propose([ParentView(id="p", name="forgetful", source=source, knobs=knobs or {})], ctx)


def test_tune_improves_a_knob_dependent_program_and_rewrites_only_the_defaults(scorer):
    child = tune(FORGETFUL, scorer)
    assert scorer.calls[0]["window"] == 1  # warm start: the parent's values come first
    assert scorer.evaluator.minibatch_evals == len(scorer.calls) <= 6  # paid, and never twice for the same values
    assert child.knobs is not None and child.knobs["window"] > 1
    # The child scores better than the parent on the same episode (real evaluation, not the note's claim).
    assert scorer(child.source, child.knobs) > scorer(FORGETFUL, {"window": 1, "show_time": True, "fill": "stop"})
    specs = Program.parse(child.source).knobs()
    assert {k: s["default"] for k, s in specs.items()} == child.knobs
    changed = [(a, b) for a, b in zip(FORGETFUL.splitlines(), child.source.splitlines(), strict=True) if a != b]
    assert 1 <= len(changed) <= 3 and all("default" in a for a, _ in changed)  # knob lines only, byte-precise
    assert "window 1->" in child.note and "minibatch" in child.note
    from_source(child.source)


def test_same_seed_same_child_and_another_seed_may_differ(scorer):
    a = tune(FORGETFUL, scorer, seed=3)
    b = tune(FORGETFUL, scorer, seed=3)
    assert (a.source, a.knobs, a.note) == (b.source, b.knobs, b.note)


def test_no_gain_when_no_knob_changes_the_score(scorer):
    # Everything fits the budget: full_context's knobs cannot change its recall.
    with pytest.raises(OperatorFailed) as e:
        tune((HARNESSES / "full_context.py").read_text(), scorer, trials=4)
    assert e.value.reason == "no_gain"


def test_interrupted_propagates_through_optuna(scorer):
    n = {"calls": 0}

    def stopping(source: str, knobs: dict[str, Any]) -> float:
        n["calls"] += 1
        if n["calls"] == 2:
            raise Interrupted
        return scorer(source, knobs)

    with pytest.raises(Interrupted):
        tune(FORGETFUL, stopping)


def test_bad_inputs_fail_with_a_reason():
    ctx = OperatorContext(rng=random.Random(0), seeds={}, options={"trials": 4})
    with pytest.raises(OperatorFailed, match="no_minibatch"):
        TuneOperator().propose([ParentView(id="p", name="x", source=FORGETFUL)], ctx)
    ctx = OperatorContext(rng=random.Random(0), seeds={}, score_minibatch=lambda s, k: 0.0, options={"trials": "many"})
    with pytest.raises(OperatorFailed, match="trials='many'"):
        TuneOperator().propose([ParentView(id="p", name="x", source=FORGETFUL)], ctx)


def test_local_mode_climbs_from_the_parent_one_to_three_knobs_a_trial(scorer):
    ctx = OperatorContext(rng=random.Random(1), seeds={}, score_minibatch=scorer,
                          options={"trials": 12, "tune_mode": "local"})
    child = TuneOperator().propose([ParentView(id="p", name="forgetful", source=FORGETFUL)], ctx)
    assert scorer.calls[0]["window"] == 1  # the parent first
    # Every trial is one to three knobs away from the parent or from a better trial before it.
    for i, trial in enumerate(scorer.calls[1:], 1):
        assert any(1 <= sum(trial[k] != prev[k] for k in trial) <= 3 for prev in scorer.calls[:i])
    assert child.knobs is not None and child.knobs["window"] > 1
    assert scorer(child.source, child.knobs) > scorer(FORGETFUL, {"window": 1, "show_time": True, "fill": "stop"})


def test_near_mode_starts_with_local_steps_then_lets_tpe_propose(scorer):
    """``near``: the start-up trials (half of them) move one to three knobs from the best so far, as in
    ``local``; the trials after them are TPE's, free to move every knob. Eight float knobs that change
    nothing pad the program, so a TPE trial shows itself by moving them all. (Operator seed 0 makes no
    repeated start-up step, so every trial reaches the scorer: repeats are answered from memory.)"""
    pads = "".join(f'    "pad{i}": {{"type": "float", "low": 0.0, "high": 1.0, "default": 0.5}},\n' for i in range(8))
    padded = FORGETFUL.replace('KNOBS = {\n', 'KNOBS = {\n' + pads, 1)
    assert padded != FORGETFUL

    def propose(seed: int):
        ctx = OperatorContext(rng=random.Random(seed), seeds={}, score_minibatch=scorer,
                              options={"trials": 10, "tune_mode": "near"})
        return TuneOperator().propose([ParentView(id="p", name="padded", source=padded)], ctx)

    child = propose(0)
    calls = list(scorer.calls)
    assert len(calls) == 10 and calls[0]["window"] == 1 and calls[0]["pad3"] == 0.5
    def moved(i: int) -> int:  # knobs trial i moves from the nearest trial before it
        return min(sum(calls[i][k] != prev[k] for k in calls[i]) for prev in calls[:i])
    assert all(1 <= moved(i) <= 3 for i in range(1, 5))  # start-up: min(10, max(2, 10 // 2)) = 5, the parent first
    assert all(moved(i) > 3 for i in range(5, 10))  # TPE's trials draw the pads anew
    assert child.knobs is not None and child.knobs["window"] > 1
    assert scorer(child.source, child.knobs) > scorer(padded, calls[0])
    assert propose(0).knobs == child.knobs  # the same operator seed, the same child


def test_local_step_moves_few_knobs_within_their_ranges_and_never_stands_still():
    from mstar.evolve.operators.tune import local_step
    from mstar.harness.knobs import defaults, parse_knobs

    specs = parse_knobs({"n": {"type": "int", "low": 1, "high": 3, "default": 2},
                         "w": {"type": "float", "low": 0.001, "high": 10.0, "default": 1.0, "log": True},
                         "x": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
                         "on": {"type": "bool", "default": True},
                         "how": {"type": "cat", "choices": ["a", "b", "c"], "default": "a"}})
    base = defaults(specs)
    rng = random.Random(0)
    for _ in range(500):
        v = local_step(rng, specs, base)
        moved = [k for k in base if v[k] != base[k]]
        assert 1 <= len(moved) <= 3, (base, v)
        assert 1 <= v["n"] <= 3 and 0.001 <= v["w"] <= 10.0 and 0.0 <= v["x"] <= 1.0 and v["how"] in "abc"
    assert local_step(random.Random(5), specs, base) == local_step(random.Random(5), specs, base)


def test_an_unknown_tune_mode_is_refused_with_its_name(scorer):
    ctx = OperatorContext(rng=random.Random(0), seeds={}, score_minibatch=scorer, options={"tune_mode": "grid"})
    with pytest.raises(OperatorFailed, match="tune_mode='grid'"):
        TuneOperator().propose([ParentView(id="p", name="x", source=FORGETFUL)], ctx)


def test_in_a_joint_run_tune_refuses_a_child_that_buys_one_suite_with_another():
    """The minibatch of a joint run scores each suite (``MinibatchScore.suites``). Here a wider window
    lifts suite ``a`` and, past 3 turns, costs suite ``b`` half its score: the best joint trial (a window
    past 10) trades ``b`` away. With the floor (default) the child loses neither suite to its parent; with
    ``suite_floor=false`` it takes the trade. A made-up score function: the rule, not a harness, is tested."""
    from mstar.evolve.operators.base import MinibatchScore

    def joint(source: str, knobs: dict[str, Any]) -> MinibatchScore:
        a, b = min(knobs["window"], 10) / 10, 1.0 if knobs["window"] <= 3 else 0.5
        return MinibatchScore((a + b) / 2, {"a": a, "b": b})

    def child(**options):
        ctx = OperatorContext(rng=random.Random(0), seeds={}, score_minibatch=joint,
                              options={"trials": 40, "tune_mode": "local", **options})
        return TuneOperator().propose([ParentView(id="p", name="forgetful", source=FORGETFUL)], ctx)

    kept = child()
    assert joint("", kept.knobs).suites["b"] == 1.0 and kept.knobs["window"] in (2, 3)
    assert "a 0.1000 -> " in kept.note and "b 1.0000 -> 1.0000" in kept.note
    traded = child(suite_floor="false")
    assert joint("", traded.knobs).suites["b"] == 0.5 and joint("", traded.knobs) > joint("", kept.knobs)
    # One suite: no floor, whatever the option says (the scores are plain floats).
    plain = OperatorContext(rng=random.Random(0), seeds={}, score_minibatch=lambda s, k: float(joint(s, k)),
                            options={"trials": 40, "tune_mode": "local"})
    assert TuneOperator().propose([ParentView(id="p", name="forgetful", source=FORGETFUL)], plain).knobs == traded.knobs


def test_a_joint_minibatch_score_carries_each_suite(tmp_path):
    """The engine's minibatch score in a joint run: the joint mean, and each suite's mean beside it."""
    from mstar.evolve.operators.base import MinibatchScore

    eps = {f"s{i}/e": make_episode(i).model_copy(update={"id": f"s{i}/e"}) for i in (0, 1)}
    store = RunStore(tmp_path / "run")
    book = ScoreBook("evidence_recall", group=lambda ep: ep.split("/")[0])
    executor = InlineExecutor(eps, InlineBackend(), Toolkit(), EvalConfig(budget=1024))
    ev = Evaluator(store, book, executor, eps, 1024, should_stop=lambda: None)
    got = ev.score_minibatch(Target("t", FORGETFUL, {"window": 5}), list(eps))
    store.close()
    assert isinstance(got, MinibatchScore) and set(got.suites) == {"s0", "s1"}
    assert float(got) == pytest.approx(sum(got.suites.values()) / 2)
