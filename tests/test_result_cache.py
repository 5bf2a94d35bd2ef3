"""The seed cache (mstar/evolve/store/result_cache.py): a second run reuses its seeds' results and
behaves exactly as if it had scored them; anything that could change a result is a miss."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from evolve_helpers import JitterOperator, TinyTask
from test_engine import SEEDS, config, lineage

from mstar.evolve.core.config import StopConfig
from mstar.evolve.core.engine import Engine
from mstar.evolve.store.result_cache import ResultCache, from_json, to_json


@pytest.fixture
def cache_on(monkeypatch):
    monkeypatch.delenv("MSTAR_NO_CACHE", raising=False)


def _run(runs: Path, run_id: str, **kw) -> dict:
    cfg = config(run_id, stops=StopConfig(generations=2), **kw)
    return Engine(cfg, runs / run_id, operators={"jitter": JitterOperator()}, suite=TinyTask()).run()


def _rows(run_dir: Path) -> dict[tuple, tuple]:
    c = sqlite3.connect(run_dir / "run.db")
    try:
        return {(r[0], r[1], r[2], r[3]): (r[4], r[5], r[6]) for r in c.execute(
            "SELECT program, split, episode, probe, json_extract(metrics, '$.evidence_recall'), tokens, diagnosis "
            "FROM evaluations")}
    finally:
        c.close()


def test_a_second_run_reuses_the_seeds_and_is_the_same_run(tmp_path, cache_on, monkeypatch):
    first = _run(tmp_path, "a")
    cache = tmp_path / ".cache" / "seed_results.db"
    assert cache.is_file()
    # Count what the second run really evaluates: only children, never a seed.
    from mstar.evolve.execution import executor as ex

    ran: list[str] = []
    original = ex.InlineExecutor.map

    def counting(self, jobs):
        jobs = list(jobs)
        ran.extend(j.program_id for j in jobs)
        return original(self, jobs)

    monkeypatch.setattr(ex.InlineExecutor, "map", counting)
    logged: list[str] = []
    from mstar.evolve.core.live import View

    view = View(live=False)
    monkeypatch.setattr(view, "log", logged.append)
    cfg = config("b", stops=StopConfig(generations=2))
    second = Engine(cfg, tmp_path / "b", operators={"jitter": JitterOperator()}, suite=TinyTask(), view=view).run()
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert a == b  # the same rows, value for value, diagnoses included
    seed_ids = {r[0] for r in sqlite3.connect(tmp_path / "b" / "run.db").execute(
        "SELECT id FROM programs WHERE operator='seed'")}
    assert sum(v[2] is not None for k, v in b.items() if k[0] in seed_ids) > 0  # seeds' diagnoses came from the cache
    assert lineage(tmp_path / "a") == lineage(tmp_path / "b")
    assert first["best"] == second["best"] and first["seeds"] == second["seeds"]
    seeds = {r[0] for r in sqlite3.connect(tmp_path / "b" / "run.db").execute(
        "SELECT id FROM programs WHERE operator='seed'")}
    assert seeds and not seeds & set(ran), "a seed was evaluated again"
    assert ran, "the children were evaluated"
    assert any("seed cache:" in line and "reused" in line for line in logged)


def test_nothing_that_changes_a_result_hits_the_cache(tmp_path, cache_on, monkeypatch):
    _run(tmp_path, "a")
    from mstar.evolve.store import result_cache as rc

    hits: list[int] = []
    close = rc.ResultCache.close

    def spy(self):
        hits.append(self.hits)
        close(self)

    monkeypatch.setattr(rc.ResultCache, "close", spy)
    _run(tmp_path, "budget", budget=21)  # another budget: another context
    _run(tmp_path, "same")
    assert hits == [0, len(SEEDS) * 7]  # 3 seeds x (5 train + 1 val + 1 test) for the same request
    hits.clear()
    monkeypatch.setenv("MSTAR_NO_CACHE", "1")
    _run(tmp_path, "off")
    assert hits == []  # switched off: not even opened
    monkeypatch.delenv("MSTAR_NO_CACHE")
    _run(tmp_path, "flag", seed_cache=False)
    assert hits == []


def test_an_episode_changed_in_its_content_is_a_miss(tmp_path):
    task = TinyTask()
    ep = task.episodes("train")[0]
    c = ResultCache(tmp_path / "c.db", "ctx")
    from mstar.evaluate import EpisodeResult
    from mstar.scoring.evidence import ProbeScore

    res = EpisodeResult(episode_id=ep.id, probes=[ProbeScore("p1", "c", 10, 1.0, evidence_recall=0.5,
                                                             credited=["x"], wide_credited=["x", "y"])],
                        write_ms=[0.1], wall_s=1.5, dump=[{"id": "m1", "text": "a long memory"}])
    diags = {"p1": {"stage": "cut_by_budget", "probe_id": "p1"}}
    c.put("prog", ep, res, diags)
    got, got_diags = c.get("prog", ep)
    assert got_diags == diags
    assert got.dump is None and got == EpisodeResult(**{**res.__dict__, "dump": None})  # the dump is not kept
    assert c.get("other", ep) is None
    changed = ep.model_copy(update={"events": ep.events[:-1]})
    assert c.get("prog", changed) is None and ResultCache(tmp_path / "c.db", "ctx2").get("prog", ep) is None
    failed = EpisodeResult(episode_id=ep.id, probes=[], failure=("timeout", "slow machine"))
    c.put("prog2", ep, failed, {})
    assert c.get("prog2", ep) is None  # a failure is never kept
    assert from_json(to_json(failed)).failure == ("timeout", "slow machine")
    # A damaged entry is a miss, not a crash.
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute("UPDATE results SET result=?", (b"not zlib",))
    db.commit()
    db.close()
    assert ResultCache(tmp_path / "c.db", "ctx").get("prog", ep) is None


def test_a_cache_file_that_is_not_a_database_costs_the_reuse_not_the_run(tmp_path, cache_on):
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "seed_results.db").write_bytes(b"this is not an SQLite file" * 100)
    out = _run(tmp_path, "a")
    assert out["best"]["train"] is not None
    again = _run(tmp_path, "b")
    assert again["best"] == out["best"]
