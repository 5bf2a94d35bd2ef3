"""The run's result: the best on train among the programs val cannot tell from the best on val."""

from __future__ import annotations

import pytest

from mstar.evolve.core.selection import choose, paired_gap


def probes(hits: int, n: int = 100, offset: int = 0) -> dict[str, float]:
    """Per-probe recall: ``hits`` of ``n`` probes found, starting at probe ``offset``."""
    return {f"q{i}": 1.0 if offset <= i < offset + hits else 0.0 for i in range(n)}


def run(programs: dict[str, tuple[float, dict[str, float]]]):
    order = {p: i for i, p in enumerate(programs)}
    val = {p: sum(v.values()) / len(v) for p, (_, v) in programs.items()}
    return choose(list(programs), val.get, lambda p: programs[p][0], lambda p: programs[p][1], order)


def test_a_program_half_a_probe_behind_on_val_but_better_on_train_is_returned():
    # The LoCoMo case: the seed leads on val by a hair, the evolved program is far better on train.
    best, tied = run({"seed": (0.74, probes(74)), "evolved": (0.82, probes(73, offset=2))})
    assert best == "evolved" and set(tied) == {"seed", "evolved"}


def test_a_program_val_says_is_worse_is_never_returned_however_good_on_train():
    best, tied = run({"seed": (0.70, probes(80)), "overfit": (0.99, probes(50))})
    assert best == "seed" and tied == ["seed"]


def test_the_gap_is_paired_per_probe():
    # Same mean on val; paired, b misses exactly what a finds plus one more: a consistent loss.
    a = probes(60)
    b = dict(a, q0=0.0)
    mean, se, n = paired_gap(b, a)
    assert n == 100 and mean == pytest.approx(-0.01) and se == pytest.approx(0.01)
    assert paired_gap(a, a) == (0.0, 0.0, 100)
    assert paired_gap({}, a) == (0.0, 0.0, 0)


def test_ties_fall_back_to_val_then_creation_order():
    same = probes(70)
    best, tied = run({"first": (0.8, same), "second": (0.8, same)})
    assert best == "first" and tied == ["first", "second"]
    assert run({}) == (None, [])


def test_the_strict_rule_returns_the_val_leader():
    programs = {"seed": (0.74, probes(74)), "evolved": (0.82, probes(73, offset=2))}
    order = {p: i for i, p in enumerate(programs)}
    val = {p: sum(v.values()) / len(v) for p, (_, v) in programs.items()}
    assert choose(list(programs), val.get, lambda p: programs[p][0], lambda p: programs[p][1], order,
                  rule="val") == ("seed", ["seed"])


def test_select_is_checked():
    from pydantic import ValidationError

    from mstar.evolve.core.config import EvolveConfig

    assert EvolveConfig(run_id="r", task="tiny").select == "1se"
    with pytest.raises(ValidationError, match="select"):
        EvolveConfig(run_id="r", task="tiny", select="best")
