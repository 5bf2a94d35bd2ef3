"""The search's policies (mstar/evolve/strategies/): each does what it claims, on hand-made populations."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mstar.evolve.core.config import EvolveConfig
from mstar.evolve.store.scores import EpisodeAgg, ScoreBook
from mstar.evolve.strategies.archive import ParetoArchive
from mstar.evolve.strategies.base import SearchView
from mstar.evolve.strategies.behaviour import AggregateBehaviour, CodeBehaviour, SignatureBehaviour
from mstar.evolve.strategies.migration import IslandReset
from mstar.evolve.strategies.parents import ParetoParents, RankParents, probe_wins
from mstar.evolve.strategies.population import Population

# Per-probe values on train. "gen" is the best generalist; "close" is nearly as good on average but
# best on no probe; "spec" is poor on average but the only one that solves p7 and p8.
VALUES = {
    "gen": {"p1": 1, "p2": 1, "p3": 1, "p4": 1, "p5": 1, "p6": 0.5, "p7": 0, "p8": 0},
    "close": {"p1": 0.9, "p2": 0.9, "p3": 0.9, "p4": 0.9, "p5": 0.9, "p6": 0.4, "p7": 0, "p8": 0},
    "spec": {"p1": 0, "p2": 0, "p3": 0, "p4": 0, "p5": 0, "p6": 0.5, "p7": 1, "p8": 1},
}


def _view() -> SearchView:
    pop = Population(1, 10)
    for pid, v in VALUES.items():
        pop.add(0, pid, sum(v.values()) / len(v))
    return SearchView(pop, ParetoArchive(), lambda pid: VALUES[pid])


def _draws(policy, n: int = 3000) -> Counter:
    rng, view = random.Random(0), _view()
    return Counter(policy.pick(rng, 0, set(), view) for _ in range(n))


def test_probe_wins_counts_each_probe_a_program_is_best_on_ties_included():
    assert probe_wins(list(VALUES), VALUES) == {"gen": 6, "close": 0, "spec": 3}


def test_pareto_parents_keep_the_specialist_and_never_draw_a_program_best_on_no_probe():
    pareto, rank = _draws(ParetoParents(archive_rate=0)), _draws(RankParents(archive_rate=0))
    assert pareto["close"] == 0  # dominated probe by probe: never a parent under pareto
    assert rank["close"] > rank["spec"]  # the rank draw sees only means: the near-clone outbreeds the specialist
    # pareto draws in proportion to probes won: spec 3 of 9
    assert abs(pareto["spec"] / 3000 - 3 / 9) < 0.04 and pareto["spec"] > 3 * rank["spec"]


def test_pareto_parents_fall_back_to_the_rank_draw_without_probe_values():
    pop = Population(1, 10)
    pop.add(0, "a", 0.5)
    pop.add(0, "b", 0.4)
    view = SearchView(pop, ParetoArchive(), lambda pid: {})
    assert ParetoParents(archive_rate=0).pick(random.Random(1), 0, set(), view) in {"a", "b"}


def _book() -> ScoreBook:
    """Three programs on one screen episode of four probes: x and y have the same mean (0.5) on
    different probes; z solves what x solves with a different context size."""
    book = ScoreBook("evidence_recall")
    rows = {"x": ([1, 1, 0, 0], 100), "y": ([0, 0, 1, 1], 100), "z": ([1, 1, 0, 0], 300)}
    for pid, (vals, tokens) in rows.items():
        agg = EpisodeAgg()
        for i, v in enumerate(vals):
            agg.add_probe({"evidence_recall": v}, "evidence_recall", tokens, None, f"q{i}")
        book.put(pid, "train", "e1", agg)
    return book


def test_the_signature_key_tells_programs_apart_by_the_probes_they_fail_not_their_mean_or_size():
    book = _book()
    agg, sig = AggregateBehaviour(book, ["e1"]), SignatureBehaviour(book, ["e1"])
    assert agg.key("x") == agg.key("y") and agg.key("x") != agg.key("z")
    assert sig.key("x") != sig.key("y") and sig.key("x") == sig.key("z")
    assert "2 of them below 1" in sig.describe("x")
    assert CodeBehaviour(book, ["e1"]).key("x") is None


def test_prefer_shorter_ranks_the_shorter_of_equals_first_and_keeps_it_on_a_full_island():
    plain, short = Population(1, 2), Population(1, 2, prefer_shorter=True)
    for pop in (plain, short):
        pop.add(0, "best", 0.9, size=500)
        pop.add(0, "long", 0.5, size=900)
        pop.add(0, "lean", 0.5, size=300)  # the island holds 2: one of the equals goes
    assert plain.islands[0] == ["best", "long"]  # incumbents keep their place
    assert short.islands[0] == ["best", "lean"]
    assert short.best() == "best"  # better scores still come first


def test_island_reset_reseeds_the_weaker_half_from_the_best_of_the_others():
    pop = Population(4, 5)
    for island, (pid, score) in enumerate([("a", 0.2), ("b", 0.9), ("c", 0.5), ("d", 0.7)]):
        pop.add(island, pid, score)
        pop.add(island, pid + "2", score - 0.1)
    reset = IslandReset(3)
    assert reset.reset(pop, 2) == [] and pop.islands[0] == ["a", "a2"]
    done = reset.reset(pop, 3)
    assert [(r.island, r.seeded_with) for r in done] == [(0, "b"), (2, "d")]
    assert pop.islands == [["b"], ["b", "b2"], ["d"], ["d", "d2"]]
    assert IslandReset(None).reset(pop, 3) == [] and IslandReset(0).reset(pop, 6) == []


def test_policy_options_live_in_the_config_with_the_old_behaviour_as_default(tmp_path):
    cfg = EvolveConfig(run_id="r", task="tiny")
    assert (cfg.parent_policy, cfg.behaviour_key, cfg.prefer_shorter, cfg.island_reset_every) == \
        ("rank", "aggregate", False, None)
    assert EvolveConfig(run_id="r", task="tiny", parent_policy="tournament").parent_policy == "rank"
    with pytest.raises(ValueError, match="parent_policy"):
        EvolveConfig(run_id="r", task="tiny", parent_policy="roulette")
    saved = EvolveConfig(run_id="r", task="tiny", parent_policy="pareto", behaviour_key="signature",
                         prefer_shorter=True, island_reset_every=2)
    saved.save(tmp_path)
    assert EvolveConfig.load(tmp_path).model_dump(exclude={"created"}) == saved.model_dump(exclude={"created"})


# --- the options in a run ----------------------------------------------------------------------------------
POLICIES = dict(parent_policy="pareto", behaviour_key="signature", prefer_shorter=True, island_reset_every=2)


def _run(tmp_path, run_id: str, **stops):
    from evolve_helpers import JitterOperator, TinyTask

    from mstar.evolve.core.config import StopConfig
    from mstar.evolve.core.engine import Engine

    cfg = EvolveConfig(run_id=run_id, task="tiny", budget=30, seed=1, screen_episodes=3, seeds=["bm25", "bm25_neighbors",
                       "recency"], operators={"jitter": 1.0}, children_per_gen=4, islands=2, island_size=5, final_k=2,
                       stops=StopConfig(**stops), sandbox="inline", **POLICIES)
    return Engine(cfg, tmp_path / run_id, operators={"jitter": JitterOperator()}, suite=TinyTask()).run()


def _lineage(run_dir):
    from mstar.evolve.store.run_store import RunStore

    s = RunStore(run_dir)
    try:
        return ([(p.generation, p.slot, tuple(p.parents), p.program, p.outcome) for p in s.proposals()],
                [e[2] for e in s.events("island_reset")])
    finally:
        s.close()


def test_a_run_with_every_policy_on_resets_islands_and_resumes_to_the_same_lineage(tmp_path):
    from mstar.evolve.core.config import StopConfig
    from mstar.evolve.core.engine import Engine

    _run(tmp_path, "full", generations=4)
    full, resets = _lineage(tmp_path / "full")
    assert [r["generation"] for r in resets] == [2, 4]  # 2 islands: the weaker one, at generations 2 and 4
    assert EvolveConfig.load(tmp_path / "full").parent_policy == "pareto"
    first = _run(tmp_path, "part", generations=4, max_evals=30)
    assert first["stop_reason"].startswith("evaluation limit")
    cfg = EvolveConfig.load(tmp_path / "part")
    cfg.stops = StopConfig(generations=4)
    from evolve_helpers import JitterOperator, TinyTask

    Engine(cfg, tmp_path / "part", operators={"jitter": JitterOperator()}, suite=TinyTask()).run()
    assert _lineage(tmp_path / "part") == (full, resets)


def test_the_cli_takes_the_policy_flags_and_a_resume_refuses_them(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    entry = str(Path(__file__).resolve().parent / "evolve_entry.py")
    base = [sys.executable, entry, "evolve", "--task", "tiny", "--budget", "20", "--seeds", "bm25,recency",
            "--operators", "jitter=1", "--children-per-gen", "2", "--executor", "inline", "--sandbox", "inline",
            "--quiet", "--runs-dir", str(tmp_path)]
    r = subprocess.run([*base, "--run-id", "p", "--generations", "2", "--parent-policy", "pareto", "--behaviour-key",
                        "signature", "--prefer-shorter", "--island-reset-every", "1"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    assert (saved["parent_policy"], saved["behaviour_key"], saved["prefer_shorter"], saved["island_reset_every"]) == \
        ("pareto", "signature", True, 1)
    r = subprocess.run([*base, "--resume", str(tmp_path / "p"), "--generations", "3", "--parent-policy", "rank"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--parent-policy" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*base, "--run-id", "q", "--generations", "1", "--behaviour-key", "smell"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--behaviour-key" in r.stderr and "signature" in r.stderr and "Traceback" not in r.stderr


def test_an_injected_parent_policy_is_the_one_the_engine_uses(tmp_path):
    from evolve_helpers import JitterOperator, TinyTask

    from mstar.evolve.core.config import StopConfig
    from mstar.evolve.core.engine import Engine
    from mstar.evolve.strategies.defaults import Strategies

    class Worst:
        name = "worst"

        def pick(self, rng, island, exclude, view):
            return min(view.population.all_ids(), key=lambda p: (view.population.scores[p], p))

    cfg = EvolveConfig(run_id="w", task="tiny", budget=30, seeds=["bm25", "recency"], operators={"jitter": 1.0},
                       children_per_gen=3, final_k=1, stops=StopConfig(generations=1), sandbox="inline")
    strategies = Strategies.from_config(cfg)
    strategies.parents = Worst()
    summary = Engine(cfg, tmp_path / "w", operators={"jitter": JitterOperator()}, suite=TinyTask(),
                     strategies=strategies).run()
    worst = min(summary["seeds"].values(), key=lambda s: s["train"])["id"]
    assert {tuple(p) for p in (q[0] for q in _proposal_parents(tmp_path / "w"))} == {(worst,)}


def _proposal_parents(run_dir):
    from mstar.evolve.store.run_store import RunStore

    s = RunStore(run_dir)
    try:
        return [(p.parents,) for p in s.proposals()]
    finally:
        s.close()
