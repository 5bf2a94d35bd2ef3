"""bench/search_ablation.py: its core runs real engine runs (inline sandbox, synthetic suite, no LLM) with a
tiny budget, and the variants really differ in what the search did (read back from each run's store)."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("search_ablation", ROOT / "bench" / "search_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["search_ablation"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


SMALL = ["--task", "synthetic", "--task-opt", "episodes=5", "--task-opt", "events=80", "--task-opt", "probes=10",
         "--only-seeds", "bm25,recency", "--seeds", "1"]


def _ops(run_dir: str) -> set[str]:
    with sqlite3.connect(Path(run_dir) / "run.db") as c:
        return {op for (op,) in c.execute("SELECT operator FROM proposals")}


def test_two_variants_on_synthetic_give_curves_test_scores_timings_and_differ_in_what_they_ran(tmp_path):
    sa = _bench()
    out_json = tmp_path / "out.json"
    args = sa.parser().parse_args(SMALL + ["--variants", "default,no_tune", "--max-evals", "40",
                                           "--runs-dir", str(tmp_path / "runs"), "--json", str(out_json)])
    lines: list[str] = []
    out = sa.run_all(args, log=lines.append)

    assert json.loads(out_json.read_text())["summary"]["variants"].keys() == {"default", "no_tune"}
    assert [(r["variant"], r["seed"]) for r in out["runs"]] == [("default", 0), ("no_tune", 0)]
    template = out["seeds_template"]
    assert set(template["seed_ids"]) == {"bm25", "recency"}
    n_seed_train = 2 * 3  # two seeds x three train episodes (5 synthetic episodes: 3 train, 1 val, 1 test)
    for r in out["runs"]:
        xs = [x for x, _ in r["curve"]]
        ys = [y for _, y in r["curve"]]
        assert xs[0] == n_seed_train and xs == sorted(xs) and ys == sorted(ys), r["curve"]
        assert xs[-1] <= 40
        assert 0.0 <= r["best"]["test"] <= 1.0 and r["best"]["train"] == ys[-1]
        t = r["time"]
        # Only the search's own evaluations ran here (the seeds' came from the template), each one timed
        assert r["evaluations"] == n_seed_train + t["jobs"] and t["search_jobs"] >= xs[-1] - n_seed_train
        assert t["seconds"]["harness write/read"] > 0 and t["seconds"]["scoring on host"] > 0
        assert t["seconds"]["sandbox start/stop"] > 0 and t["evals_per_min"] > 0
        assert all(v >= 0 for k, v in t["seconds"].items() if k != "engine rest (setup, selection)")

    default, no_tune = out["runs"]
    cfg = json.loads((Path(no_tune["run_dir"]) / "config.json").read_text())
    assert "tune" not in cfg["operators"] and cfg["operators"]
    assert _ops(no_tune["run_dir"]) == {"structural"}
    assert "tune" in _ops(default["run_dir"])  # the default mix did propose with tune in this run
    assert "tune" not in no_tune["proposals"] and no_tune["time"]["minibatch_jobs"] == 0
    assert default["time"]["minibatch_jobs"] > 0  # tune's trials are evaluations too, and were counted
    table = "\n".join(lines)
    assert "| default | 1 |" in table and "| no_tune | 1 |" in table and "where the time goes" in table


def test_a_variant_this_mstar_cannot_run_stops_the_script_with_one_line(monkeypatch):
    sa = _bench()
    args = sa.parser().parse_args(SMALL)
    monkeypatch.setitem(sa.VARIANTS, "future", sa.Variant("future", "a policy of a later mstar",
                                                          sa._policy("no_such_field", 1)))
    monkeypatch.setitem(sa.VARIANTS, "same", sa.Variant("same", "the default under another name",
                                                        sa._policy("prefer_shorter", False)))
    for name, message in (("future", "--variants: future: this mstar's EvolveConfig has no field 'no_such_field'"),
                          ("same", "--variants: same: prefer_shorter=False is already the default")):
        with pytest.raises(SystemExit) as e:
            sa.plan(["default", name], args)
        assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_policy_variants_set_the_engine_options_and_the_engine_builds_them():
    """pareto_parents, signature_key, code_key, prefer_shorter, island_reset and no_novelty really change what
    Strategies.from_config builds (no skip: the options exist on this mstar)."""
    from mstar.evolve.core.config import EvolveConfig
    from mstar.evolve.strategies.defaults import Strategies

    sa = _bench()
    args = sa.parser().parse_args(SMALL)
    names = ["pareto_parents", "signature_key", "code_key", "prefer_shorter", "island_reset", "no_novelty",
             "no_pareto"]
    todo = dict((v.name, made) for v, made in sa.plan(names, args))
    assert todo == {"pareto_parents": {"parent_policy": "pareto"}, "signature_key": {"behaviour_key": "signature"},
                    "code_key": {"behaviour_key": "code"}, "prefer_shorter": {"prefer_shorter": True},
                    "island_reset": {"island_reset_every": 3}, "no_novelty": {"novelty": False},
                    "no_pareto": {"archive_rate": 0.0}}
    base = sa.base_kwargs(args, 0, "t")
    built = {n: Strategies.from_config(EvolveConfig(**{**base, **o})) for n, o in todo.items()}
    default = Strategies.from_config(EvolveConfig(**base))
    assert type(built["pareto_parents"].parents).__name__ == "ParetoParents"
    assert type(default.parents).__name__ == "RankParents"
    assert built["signature_key"].behaviour.__name__ == "SignatureBehaviour"
    assert built["no_novelty"].behaviour.__name__ == "CodeBehaviour"  # novelty off: no behavioural look either
    assert built["no_novelty"].novelty(0.995).enabled is False and default.novelty(0.995).enabled is True
    assert built["island_reset"].island_reset.every == 3 and not default.island_reset.every


def test_novelty_off_with_the_signature_key_is_refused_in_one_line():
    from mstar.evolve.core.config import EvolveConfig

    with pytest.raises(ValueError) as e:
        EvolveConfig(run_id="x", task="synthetic", novelty=False, behaviour_key="signature")
    assert "novelty: false switches the behaviour check off too" in str(e.value)


def test_no_new_seeds_drops_them_from_the_seeds_and_the_parts_bin_of_a_real_run(tmp_path):
    """A real engine setup (synthetic, inline): the run's seeds and the breeder's parts bin lack the new seeds,
    which the default run's parts bin holds."""
    from mstar.evolve.core.config import EvolveConfig, StopConfig
    from mstar.evolve.core.live import View
    from mstar.harness.loader import seed_names

    sa = _bench()
    assert set(sa.NEW_SEEDS) <= set(seed_names())
    made = sa._no_new_seeds("no_new_seeds", {"seeds": None})
    assert not set(sa.NEW_SEEDS) & set(made["seeds"]) and made["_exclude_parts"] == list(sa.NEW_SEEDS)
    parts = {}
    for name, kw, exclude in (("default", {"seeds": ["bm25"]}, ()),
                              ("no_new_seeds", {"seeds": ["bm25"]}, tuple(made["_exclude_parts"]))):
        cfg = EvolveConfig(run_id=name, task="synthetic", task_opts={"episodes": 3, "events": 30, "probes": 4},
                           sandbox="inline", executor="inline", embedder="hashing", stops=StopConfig(generations=0), **kw)
        eng = sa.AblationEngine(cfg, tmp_path / name, view=View(live=False), clock=sa.Clock(), exclude_parts=exclude)
        eng._setup()
        try:
            parts[name] = set(eng.breeder.seeds)
        finally:
            eng._executor.close()
            eng.store.close()
            eng._lock.close()
    assert set(sa.NEW_SEEDS) <= parts["default"]
    assert not set(sa.NEW_SEEDS) & parts["no_new_seeds"] and "bm25" in parts["no_new_seeds"]


def test_a_missing_engine_hook_stops_the_run(monkeypatch, tmp_path):
    import ablation_timing

    sa = _bench()
    monkeypatch.delattr(ablation_timing.Engine, "_parts_bin")
    with pytest.raises(ablation_timing.HookMissing, match="no _parts_bin/_setup hook"):
        sa.AblationEngine(None, tmp_path, clock=sa.Clock())


def test_novelty_off_lets_a_near_duplicate_through_but_not_the_same_program():
    from mstar.evolve.strategies.novelty import NoveltyFilter

    src = "def f(x):\n    return x + 1\n"
    for enabled, near_dup_novel in ((True, False), (False, True)):
        nf = NoveltyFilter(enabled=enabled)
        nf.add("a", src, {})
        assert nf.check("b", src + "# a comment\n", {}, {}).novel is near_dup_novel
        assert nf.check("a", src, {}, {}).novel is False


@pytest.mark.parametrize("argv, message", [
    (["--variants", "default,nope"], "--variants: unknown nope"),
    (["--seeds", "0"], "--seeds: must be at least 1"),
    (["--max-evals", "0"], "--max-evals: must be at least 1"),
    (["--render", "{tmp}/none.json"], "--render: {tmp}/none.json is not a --json file of this script"),
])
def test_bad_flags_get_a_one_line_error(argv, message, tmp_path):
    sa = _bench()
    with pytest.raises(SystemExit) as e:
        sa.main([a.format(tmp=tmp_path) for a in argv] + ["--runs-dir", str(tmp_path / "r")])
    assert str(e.value).startswith(message.format(tmp=tmp_path)) and "\n" not in str(e.value)
