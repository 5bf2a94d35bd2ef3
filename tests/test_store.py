"""The run store: transactions, idempotent decisions, atomic episodes under kill -9, best.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mstar.evolve.store.run_store import ProgramRecord, ProposalRecord, RunStore, freeze_knobs
from mstar.harness.loader import from_source, load_program


def test_wal_mode_and_schema(tmp_path):
    s = RunStore(tmp_path)
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    tables = {r[0] for r in s.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"programs", "evaluations", "llm_calls", "events", "proposals", "state"} <= tables


def test_a_failed_transaction_leaves_nothing(tmp_path):
    s = RunStore(tmp_path)
    with pytest.raises(RuntimeError), s.tx():
        s.add_program(ProgramRecord(id="p1", name="x", source="s"))
        s.event("e", {})
        raise RuntimeError("boom")
    assert s.get_program("p1") is None and s.events() == []
    assert s.add_program(ProgramRecord(id="p1", name="x", source="s"))
    assert not s.add_program(ProgramRecord(id="p1", name="y", source="t"))  # ids are content hashes: no overwrite


def test_episode_rows_and_done_marker(tmp_path):
    s = RunStore(tmp_path)
    probes = [{"probe": f"q{i}", "metrics": {"evidence_recall": 1.0, "category": "c"}, "tokens": 5, "latency": 1.0,
               "diagnosis": {"probe_id": f"q{i}"} if i else None} for i in range(3)]
    s.add_episode("p1", "train", "ep1", {"wall_s": 0.5, "failure": None}, probes, cost=0.25)
    assert s.done_episodes() == {("p1", "train", "ep1")}
    rows = list(s.evaluation_rows())
    assert len(rows) == 4 and s.count_episodes() == 1
    # a probe row without its summary row (a torn episode) is never read back
    s.conn.execute("INSERT INTO evaluations VALUES('p1','train','ep2','q0',0,'{}',0,0,0,NULL,0)")
    assert len(list(s.evaluation_rows())) == 4


def test_decisions_are_recorded_once(tmp_path):
    s = RunStore(tmp_path)
    prog = ProgramRecord(id="c1", name="child", source="s", status="pending")
    p = ProposalRecord(generation=1, slot=0, island=0, operator="tune", parents=["p0"], program="c1")
    s.put_proposal(p, prog)
    assert s.get_proposal(1, 0).outcome == "pending" and s.events("proposal") == []
    p.outcome, p.reason, p.train = "accepted", "better", 0.8
    assert s.decide(p, "accepted")
    assert not s.decide(p, "accepted")  # a replay after resume changes nothing and logs nothing
    assert len(s.events("proposal")) == 1 and s.get_program("c1").status == "accepted"
    failed = ProposalRecord(generation=1, slot=1, island=1, operator="tune", parents=["p0"], outcome="failed",
                            reason="invalid: x")
    s.put_proposal(failed)
    assert [e[2]["outcome"] for e in s.events("proposal")] == ["accepted", "failed"]


def test_state_llm_ledger_and_cache(tmp_path):
    s = RunStore(tmp_path)
    s.set_state("generation_done", 3)
    s.add_llm_call("operator:x", "m", 10, 5, 0.01, False)
    s.add_llm_call("harness", "m", 0, 0, 0.0, True)
    s.cache_put("k", {"text": "hi"})
    s.close()
    s = RunStore(tmp_path)
    assert s.get_state("generation_done") == 3 and s.get_state("missing", 7) == 7
    assert s.llm_totals() == (15, 0.01)
    assert s.cache_get("k") == {"text": "hi"} and s.cache_get("nope") is None


def test_freeze_knobs_rewrites_defaults_and_stays_valid(tmp_path):
    prog = load_program("bm25_neighbors")
    src = freeze_knobs(prog.source, {"top_k": 17, "show_time": True, "unknown": 1})
    again = from_source(src)
    assert again.knob_specs["top_k"].default == 17 and again.knob_specs["show_time"].default is True
    assert again.knob_specs["k1"].default == prog.knob_specs["k1"].default
    assert freeze_knobs(prog.source, {"top_k": prog.knob_specs["top_k"].default}) == prog.source
    s = RunStore(tmp_path)
    path = s.write_best(prog.source, {"top_k": 5}, "header")
    assert path.read_text().startswith("# header\n") and from_source(path.read_text()).knob_specs["top_k"].default == 5


WRITER = textwrap.dedent("""
    import sys
    from mstar.evolve.store.run_store import RunStore
    s = RunStore(sys.argv[1])
    probes = [{"probe": f"q{i}", "metrics": {"evidence_recall": 0.5}, "tokens": 1, "latency": 0.1}
              for i in range(400)]
    i = 0
    while True:
        s.add_episode("p", "train", f"ep{i}", {"wall_s": 0.0}, probes)
        i += 1
""")


def test_kill_9_during_writes_loses_no_committed_episode_and_tears_none(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run)])
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            time.sleep(0.05)
            if (run / "run.db").exists():
                try:
                    c = sqlite3.connect(run / "run.db", timeout=5)
                    n = c.execute("SELECT COUNT(*) FROM evaluations WHERE probe=''").fetchone()[0]
                    c.close()
                except sqlite3.OperationalError:
                    continue
                if n >= 5:
                    break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    c = sqlite3.connect(run / "run.db")
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = c.execute("SELECT episode FROM evaluations WHERE probe=''").fetchall()
    assert len(done) >= 5
    counts = dict(c.execute("SELECT episode, COUNT(*) FROM evaluations GROUP BY episode").fetchall())
    # every episode is all-or-nothing: 400 probe rows + its summary row
    assert set(counts.values()) == {401}
    assert len(counts) == len(done)


def test_run_dir_is_created(tmp_path):
    d = Path(tmp_path) / "a" / "b"
    RunStore(d)
    assert (d / "run.db").exists()


def test_a_book_rebuilt_from_the_store_equals_the_one_built_live(tmp_path):
    """Resume reads scores and diagnoses back from run.db; they must match what the live run had,
    including the order of failures (operators sample from it with the run's random stream)."""
    from evolve_helpers import TinyTask

    from mstar.evaluate import EvalConfig, evaluate_episode
    from mstar.evolve.store.scores import ScoreBook, digest
    from mstar.sandbox.inline import InlineBackend
    from mstar.toolkit import Toolkit

    prog = load_program("bm25")
    store = RunStore(tmp_path)
    live = ScoreBook("evidence_recall")
    eps = TinyTask().all[:3]
    for ep in reversed(eps):  # stored in another order than the one read back
        res = evaluate_episode(prog, ep, InlineBackend(), Toolkit(), None, EvalConfig(budget=20))
        diags = {p.probe_id: {"probe_id": p.probe_id, "stage": "not_retrieved"} for p in res.probes
                 if (p.evidence_recall or 0) < 1}
        agg, summary, rows = digest(res, "evidence_recall", diags)
        store.add_episode("p", "train", ep.id, summary, rows)
        live.put("p", "train", ep.id, agg)
    back = ScoreBook("evidence_recall")
    back.load(store.evaluation_rows())
    ids = [e.id for e in eps]
    assert back.stats("p", "train", ids).quality == live.stats("p", "train", ids).quality
    assert back.stats("p", "train", ids).tokens == live.stats("p", "train", ids).tokens
    assert back.stats("p", "train", ids).by_category == live.stats("p", "train", ids).by_category
    assert back.failures("p", "train", ids) == live.failures("p", "train", ids) != []
