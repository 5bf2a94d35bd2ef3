"""Stops that hold while evaluations are in flight: the time limit, a STOP file, and the final step's
own time limit end a run within a bounded time, whatever the harness (or a slow model) is doing.

The slow harness sleeps in ``read`` (a stand-in for a harness waiting on a slow local model); it runs
in the real ``process`` sandbox. No model is involved.
"""

from __future__ import annotations

import threading
import time

import pytest
from evolve_helpers import JitterOperator, TinyTask

from mstar.evolve.core.config import EvolveConfig, StopConfig
from mstar.evolve.core.engine import Engine
from mstar.evolve.store.run_store import RunStore

SLOW = '''"""A harness whose reads take {sleep} s each."""
import time

INSTRUCTIONS = "Answer from memory."
KNOBS = {{"k": {{"type": "int", "low": 1, "high": 5, "default": 2}}}}


class Memory:
    def __init__(self, toolkit, knobs):
        self.events = []

    def write(self, event):
        self.events.append(event)

    def read(self, query):
        time.sleep({sleep})
        items = [{{"text": e["text"], "sources": [e["id"]]}} for e in self.events[-2:]]
        return {{"context": "\\n".join(i["text"] for i in items), "items": items}}
'''

pytestmark = pytest.mark.timeout(240)


def _engine(tmp_path, stops: StopConfig, sleep: float = 4.0) -> Engine:
    seed = tmp_path / "slow_seed.py"
    seed.write_text(SLOW.format(sleep=sleep))
    cfg = EvolveConfig(run_id="slow", task="tiny", budget=50, seeds=[str(seed)], operators={"jitter": 1.0},
                       children_per_gen=2, islands=1, island_size=3, final_k=1, sandbox="process", stops=stops)
    return Engine(cfg, tmp_path / "slow", operators={"jitter": JitterOperator()}, suite=TinyTask())


def test_time_limit_holds_while_a_slow_evaluation_runs(tmp_path):
    """--max-minutes 0.05 (3 s) with reads of 4 s x 8 probes per episode: without the watcher the run
    took every train episode (~3 min) and an unbounded final step. Bound: 3 s + 2 s grace + 6 s final."""
    eng = _engine(tmp_path, StopConfig(max_minutes=0.05, stop_grace_s=2, final_minutes=0.1))
    t0 = time.monotonic()
    summary = eng.run()
    wall = time.monotonic() - t0
    assert summary["stop_reason"].startswith("time limit")
    assert wall < 3 + 2 + 6 + 15, wall  # 15 s for sandbox starts and kills on a loaded machine
    assert summary["final"]["skipped"]["val"] > 0 or summary["final"]["skipped"]["test"] > 0
    store = RunStore(tmp_path / "slow")
    try:  # nothing half-done was stored: each stored episode is complete (its summary row exists)
        rows = store.conn.execute("SELECT program, split, episode FROM evaluations WHERE probe<>'' "
                                  "EXCEPT SELECT program, split, episode FROM evaluations WHERE probe=''").fetchall()
        assert rows == []
    finally:
        store.close()
    # Resumable: a second invocation picks the run up (and stops again by its own limit).
    again = Engine(eng.config, tmp_path / "slow", operators={"jitter": JitterOperator()}, suite=TinyTask())
    assert again.run()["run_id"] == "slow"


def test_stop_file_ends_an_evaluation_in_flight(tmp_path):
    eng = _engine(tmp_path, StopConfig(generations=5, stop_grace_s=1, final_minutes=0.05))

    def drop_stop_file():
        time.sleep(3)
        (tmp_path / "slow" / "STOP").write_text("")

    threading.Thread(target=drop_stop_file, daemon=True).start()
    t0 = time.monotonic()
    summary = eng.run()
    wall = time.monotonic() - t0
    assert summary["stop_reason"] == "stop file (STOP)"
    assert wall < 3 + 1 + 3 + 15, wall


def test_sigterm_ends_an_evaluation_in_flight(tmp_path):
    """SIGTERM (and Ctrl-C the same way) mid-evaluation: graceful, then bounded by the grace."""
    import os
    import signal

    eng = _engine(tmp_path, StopConfig(generations=5, stop_grace_s=1, final_minutes=0.05))
    threading.Timer(3, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    t0 = time.monotonic()
    summary = eng.run()
    assert summary["stop_reason"] == "terminated (SIGTERM)"
    assert time.monotonic() - t0 < 3 + 1 + 3 + 15


class SlowOperator:
    """Asks for a stop, then 'waits on a model' for 10 minutes (a stand-in for a slow local model
    writing a whole program): the stop must not wait for it."""

    name = "slow"
    needs_llm = False
    arity = 1

    def __init__(self, run_dir):
        self.run_dir = run_dir

    def propose(self, parents, ctx):
        (self.run_dir / "STOP").write_text("")
        time.sleep(600)
        raise AssertionError("not interrupted")


def test_stop_does_not_wait_for_a_slow_proposal(tmp_path):
    from mstar.harness.loader import load_program

    run_dir = tmp_path / "op"
    cfg = EvolveConfig(run_id="op", task="tiny", budget=50, seeds=["bm25"], operators={"slow": 1.0},
                       children_per_gen=1, islands=1, island_size=3, final_k=1, sandbox="inline",
                       stops=StopConfig(generations=3, stop_grace_s=1, final_minutes=0.5))
    assert load_program("bm25")
    eng = Engine(cfg, run_dir, operators={"slow": SlowOperator(run_dir)}, suite=TinyTask())
    t0 = time.monotonic()
    summary = eng.run()
    assert summary["stop_reason"] == "stop file (STOP)"
    assert time.monotonic() - t0 < 120  # seeds + ~1 s to notice + 1 s grace + the final step
    assert eng.store is not None and summary["proposals"] == {}  # the unfinished proposal was dropped
