"""Islands, migration, the Pareto archive, the novelty filter and parent sampling."""

from __future__ import annotations

import random
from collections import Counter

from mstar.evolve.strategies import sampling
from mstar.evolve.strategies.archive import ParetoArchive, Point, dominates
from mstar.evolve.strategies.novelty import NoveltyFilter, normalise_source
from mstar.evolve.strategies.population import Population
from mstar.harness.knobs import parse_knobs
from mstar.harness.loader import load_program


def test_island_keeps_the_best_and_evicts_the_worst_newest_first_on_ties():
    pop = Population(n_islands=2, island_size=3)
    assert pop.add(0, "a", 0.5) == []
    pop.add(0, "b", 0.7)
    pop.add(0, "c", 0.6)
    assert pop.islands[0] == ["b", "c", "a"]
    assert pop.add(0, "d", 0.1) == ["d"]  # worse than everyone: does not get in
    assert pop.add(0, "e", 0.5) == ["e"]  # ties with "a": the incumbent stays
    assert pop.add(0, "f", 0.9) == ["a"]
    assert pop.islands[0] == ["f", "b", "c"]
    assert pop.islands[1] == []
    assert pop.best() == "f" and pop.best(1) is None


def test_ring_migration_moves_each_islands_best_to_the_next():
    pop = Population(n_islands=3, island_size=4)
    pop.add(0, "a0", 0.9)
    pop.add(0, "a1", 0.1)
    pop.add(1, "b0", 0.5)
    pop.add(2, "c0", 0.3)
    moved = pop.migrate()
    assert [(m.program, m.source, m.target) for m in moved] == [("a0", 0, 1), ("b0", 1, 2), ("c0", 2, 0)]
    assert set(pop.islands[1]) == {"a0", "b0"} and set(pop.islands[2]) == {"b0", "c0"}
    assert set(pop.islands[0]) == {"a0", "a1", "c0"}
    # a second migration only moves what is not there yet
    moved = pop.migrate()
    assert [(m.program, m.target) for m in moved] == [("a0", 2), ("b0", 0)]  # island 2's best is now b0
    assert Population(n_islands=1, island_size=3).migrate() == []


def test_migrant_into_a_full_island_that_would_be_evicted_is_not_counted():
    pop = Population(n_islands=2, island_size=1)
    pop.add(0, "weak", 0.1)
    pop.add(1, "strong", 0.9)
    moved = pop.migrate()
    assert [(m.program, m.target) for m in moved] == [("strong", 0)]
    assert pop.islands[0] == ["strong"]


def test_pareto_archive_keeps_exactly_the_non_dominated_points():
    pts = [Point("a", 0.7, 1000), Point("b", 0.6, 400), Point("c", 0.65, 1200), Point("d", 0.7, 900),
           Point("e", 0.2, 50), Point("f", 0.6, 400, cost=0.01), Point("g", 0.75, 1024)]
    arch = ParetoArchive()
    for p in pts:
        arch.add(p)
    front = {p.id for p in arch.front()}
    # brute force: a point is on the front iff nothing dominates it
    expected = {p.id for p in pts if not any(dominates(q, p) for q in pts)}
    assert front == expected == {"b", "d", "e", "g"}
    assert [p.id for p in arch.front()][0] == "g"
    assert not dominates(Point("x", 0.5, 10), Point("y", 0.5, 10))


def test_pareto_archive_random_points_match_brute_force():
    rng = random.Random(3)
    pts = [Point(str(i), round(rng.random(), 2), rng.randint(1, 20), rng.choice([0.0, 0.1])) for i in range(200)]
    arch = ParetoArchive()
    for p in pts:
        arch.add(p)
    expected = {p.id for p in pts if not any(dominates(q, p) for q in pts)}
    assert {p.id for p in arch.front()} == expected


def _bm25():
    prog = load_program("bm25")
    return prog.source, {k: s.default for k, s in prog.knob_specs.items()}, prog.knob_specs


def test_novelty_rejects_exact_and_cosmetic_duplicates():
    src, knobs, specs = _bm25()
    nf = NoveltyFilter(threshold=0.97)
    nf.add("p1", src, knobs)
    assert not nf.check("p1", src, knobs, specs).novel
    cosmetic = "# a new comment\n" + src.replace('    """The standard driver', '    """Another docstring') + "\n\n"
    assert normalise_source(cosmetic) == normalise_source(src)
    v = nf.check("p2", cosmetic, knobs, specs)
    assert not v.novel and v.similar_to == "p1" and "same code" in v.reason


def test_novelty_rejects_a_near_duplicate_but_not_new_knob_values_or_real_changes():
    src, knobs, specs = _bm25()
    nf = NoveltyFilter(threshold=0.97)
    nf.add("p1", src, knobs)
    renamed = src.replace("used, lines, items = 0, [], []", "used, lines, items = 0, [], []\n    extra = 0")
    v = nf.check("p2", renamed, knobs, specs)
    assert not v.novel and v.similarity >= 0.97
    assert nf.check("p3", src, knobs | {"top_k": 20}, specs).novel  # a tune child: same code, new values
    assert not nf.check("p4", src, knobs | {"k1": knobs["k1"] + 0.001}, specs).novel  # within knob_eps
    other = load_program("recency")
    assert nf.check("p5", other.source, {k: s.default for k, s in other.knob_specs.items()}, other.knob_specs).novel


def test_novelty_knob_closeness_uses_the_range():
    specs = parse_knobs({"x": {"type": "float", "low": 0.0, "high": 100.0, "default": 1.0},
                         "m": {"type": "cat", "choices": ["a", "b"], "default": "a"}})
    nf = NoveltyFilter(knob_eps=0.01)
    nf.add("p", "x = 1", {"x": 50.0, "m": "a"})
    assert not nf.check("q", "x = 1", {"x": 50.9, "m": "a"}, specs).novel
    assert nf.check("q", "x = 1", {"x": 52.0, "m": "a"}, specs).novel
    assert nf.check("q", "x = 1", {"x": 50.0, "m": "b"}, specs).novel


def test_sampling_weights_favour_rank_and_few_children():
    w = sampling.weights([0.9, 0.5, 0.1], [0, 0, 0])
    assert w[0] > w[1] > w[2] and abs(w[0] / w[2] - 20.0855) < 1e-3  # e^3 between best and worst
    w = sampling.weights([0.9, 0.5, 0.1], [3, 0, 0])
    assert w[0] == sampling.weights([0.9, 0.5, 0.1], [0, 0, 0])[0] / 4
    assert sampling.weights([0.5, 0.5], [0, 0])[0] > sampling.weights([0.5, 0.5], [0, 0])[1]  # older first on ties
    assert sampling.weights([], []) == []


def test_sampling_draws_follow_the_weights_and_are_seeded():
    ids = ["a", "b", "c"]
    scores = {"a": 0.9, "b": 0.5, "c": 0.1}
    rng = random.Random(0)
    draws = Counter(sampling.sample(rng, ids, scores, {"a": 9}) for _ in range(6000))
    w = sampling.weights([0.9, 0.5, 0.1], [9, 0, 0])
    for i, pid in enumerate(ids):
        assert abs(draws[pid] / 6000 - w[i] / sum(w)) < 0.03
    a = [sampling.sample(random.Random(7), ids, scores, {}) for _ in range(5)]
    b = [sampling.sample(random.Random(7), ids, scores, {}) for _ in range(5)]
    assert a == b
    assert sampling.sample(rng, ids, scores, {}, exclude={"a", "b"}) == "c"
