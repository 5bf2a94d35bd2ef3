"""A failed model call is a per-probe or per-candidate failure with a named reason, never the end of a
command; what is recorded of every call; judges that say neither yes nor no; a dead --api-base.

No real model: ``*_stub_llm`` tests use the stub OpenAI-compatible server on 127.0.0.1
(tests/llm_stub.py), ``*_dead_port`` tests a port nothing listens on, ``*_scripted`` tests give the
engine a plain function as its model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from evolve_helpers import TinyTask
from llm_stub import StubServer
from test_qa_scoring import episode, scripted

from mstar.broker import Broker, LLMReply
from mstar.errors import LLMError, ModelUnreachable
from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.evolve.core.config import EvolveConfig, StopConfig
from mstar.evolve.core.engine import Engine
from mstar.evolve.store.run_store import RunStore
from mstar.harness.loader import load_program
from mstar.sandbox.doctor import _model
from mstar.sandbox.inline import InlineBackend
from mstar.scoring.aggregate import summarize


def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def test_answer_step_on_a_dead_server_scores_probes_0_with_the_reason_dead_port(tmp_path):
    b = Broker("openai/stub", api_base=f"http://127.0.0.1:{dead_port()}/v1", max_retries=0, run_id="t",
               cache_path=tmp_path / "c.db")
    res = evaluate_episode(load_program("bm25"), episode(), InlineBackend(), b.toolkit(), None,
                           EvalConfig(budget=200, qa="judge"))
    assert res.failure is None
    assert all(p.qa_error and "LLMCallError" in p.qa_error for p in res.probes)
    assert all(p.qa_judge == 0.0 for p in res.probes)  # scored 0, not dropped from the mean
    assert summarize([res])["overall"]["qa_errors"] == 3
    # After three failures in a row the broker fails fast: later calls do not wait on retries.
    with pytest.raises(LLMError, match="not answering"):
        b.ask("one more", "answer", {})


def test_unusable_judge_verdicts_are_scored_0_and_counted_stub_llm():
    def waffling(body):
        user = body["messages"][-1]["content"]
        return "It depends on the context." if user.startswith("Question:") else scripted(body)

    server = StubServer(waffling)
    try:
        b = Broker("openai/stub", api_base=server.url)
        res = evaluate_episode(load_program("bm25"), episode(), InlineBackend(), b.toolkit(), None,
                               EvalConfig(budget=200, qa="judge"))
    finally:
        server.close()
    assert all(p.judge_unusable and p.qa_judge == 0.0 for p in res.probes)
    o = summarize([res])["overall"]
    assert o["judge_unusable"] == 3 and o["qa_judge"] == 0.0
    judge_calls = [r for r in server.requests if r["messages"][-1]["content"].startswith("Question:")]
    assert judge_calls and all(r["max_tokens"] == 8 for r in judge_calls)


def test_mstar_eval_with_the_model_down_finishes_and_says_so_dead_port(tmp_path):
    """It used to exit with code 2 on the first failed call."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "MSTAR_CACHE_DIR"}
    cmd = [sys.executable, "-m", "mstar.cli.main", "eval", "bm25", "--task", "synthetic", "--split", "test",
           "--limit", "1", "--sandbox", "inline", "--model", "openai/stub", "--api-base",
           f"http://127.0.0.1:{dead_port()}/v1", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    assert res["overall"]["qa_errors"] == res["overall"]["probes"] > 0
    assert res["overall"]["evidence_recall"] is not None  # the offline metrics are all there


def test_doctor_says_a_dead_api_base_is_dead_dead_port():
    c = _model("openai/stub", f"http://127.0.0.1:{dead_port()}/v1")
    assert c.status == "missing" and "nothing listens" in c.detail
    server = StubServer(lambda body: "ok")
    try:
        assert _model("openai/stub", server.url).status == "ok"
    finally:
        server.close()


def _cfg(run_id: str, **kw) -> EvolveConfig:
    base = dict(run_id=run_id, task="tiny", budget=50, seeds=["bm25"], operators={"structural": 1.0},
                children_per_gen=1, islands=1, island_size=3, final_k=1, model="scripted", metric="qa_f1",
                sandbox="inline")
    base.update(kw)
    return EvolveConfig(**base)


def test_ledger_attributes_every_call_and_stores_tokens_per_evaluation_scripted(tmp_path):
    def model(messages, **kw):
        return LLMReply(text="Lisbon", prompt_tokens=50, completion_tokens=3, model="scripted")

    cfg = _cfg("led", stops=StopConfig(generations=0))
    summary = Engine(cfg, tmp_path / "led", llm_backend=model, suite=TinyTask()).run()
    store = RunStore(tmp_path / "led")
    try:
        purposes = {r[0] for r in store.conn.execute("SELECT purpose FROM llm_calls")}
        assert purposes == {"answer"}  # the answer step is not labelled 'harness'
        assert store.conn.execute("SELECT MIN(ms) >= 0, COUNT(*) FROM llm_calls").fetchone()[0] == 1
        per_eval = store.conn.execute("SELECT tokens FROM evaluations WHERE probe=''").fetchall()
        assert per_eval and all(t > 0 for (t,) in per_eval)  # the episode's LLM tokens, stored
    finally:
        store.close()
    assert summary["tokens"] > 0 and summary["usd"] == 0.0
    saved = json.loads((tmp_path / "led" / "config.json").read_text())
    assert saved["llm_uses"]["scoring"] == ["answer step"] and saved["llm_uses"]["seeds"] == []
    assert saved["llm"]["max_tokens"]["answer"] == 64


def test_token_budget_stops_a_free_model_run_resumable_scripted(tmp_path):
    def model(messages, **kw):
        return LLMReply(text="Lisbon", prompt_tokens=200, completion_tokens=3, model="scripted")

    cfg = _cfg("tok", stops=StopConfig(generations=2, budget_tokens=3000))
    summary = Engine(cfg, tmp_path / "tok", llm_backend=model, suite=TinyTask()).run()
    assert summary["stop_reason"].startswith("budget spent") and "tokens" in summary["stop_reason"]
    assert summary["tokens"] <= 3000
    cfg2 = EvolveConfig.load(tmp_path / "tok")
    cfg2.stops.budget_tokens = 10**7
    again = Engine(cfg2, tmp_path / "tok", llm_backend=model, suite=TinyTask()).run()
    assert again["stop_reason"] != summary["stop_reason"]


def test_evolve_with_the_model_gone_stops_resumable_scripted(tmp_path):
    """The server dies mid-run: the run stops with one reason, nothing misscored is stored, and a
    resume with the server back finishes."""
    up = {"ok": True}

    def model(messages, **kw):
        from mstar.broker import LLMCallError

        if not up["ok"]:
            raise LLMCallError("scripted: APIConnectionError: connection refused")
        return LLMReply(text="Lisbon", prompt_tokens=20, completion_tokens=2, model="scripted")

    calls = {"n": 0}

    def flaky(messages, **kw):
        calls["n"] += 1
        if calls["n"] > 30:
            up["ok"] = False
        return model(messages, **kw)

    cfg = _cfg("down", stops=StopConfig(generations=2))
    summary = Engine(cfg, tmp_path / "down", llm_backend=flaky, suite=TinyTask()).run()
    assert summary["stop_reason"].startswith("model unreachable"), summary["stop_reason"]
    store = RunStore(tmp_path / "down")
    try:
        bad = store.conn.execute("SELECT COUNT(*) FROM evaluations WHERE metrics LIKE '%not answering%'").fetchone()
        assert bad == (0,)  # the evaluation in flight when it halted was dropped, not scored 0
    finally:
        store.close()
    up["ok"] = True
    again = Engine(EvolveConfig.load(tmp_path / "down"), tmp_path / "down", llm_backend=model,
                   suite=TinyTask()).run()
    assert not again["stop_reason"].startswith("model unreachable")


def test_model_unreachable_is_a_run_halt_not_a_candidate_failure():
    assert issubclass(ModelUnreachable, Exception)
    b = Broker("m", backend=lambda m, **k: (_ for _ in ()).throw(__import__("mstar.broker").broker.LLMCallError("x")),
               down_halts=True)
    for _ in range(3):
        with pytest.raises(Exception, match="x"):
            b.ask(f"q{_}", "answer", {})
    with pytest.raises(ModelUnreachable):
        b.ask("q9", "answer", {})
    assert b.halted


def test_mstar_eval_ledger_rows_carry_the_run_and_purpose_stub_llm(tmp_path):
    """`mstar eval` used to record its calls with run '' and the answer step as 'harness'."""
    import sqlite3

    server = StubServer(lambda body: "yes" if body["messages"][-1]["content"].startswith("Question:") else "Lisbon")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "MSTAR_CACHE_DIR"}
    cmd = [sys.executable, "-m", "mstar.cli.main", "eval", "bm25", "--task", "synthetic", "--split", "test",
           "--limit", "1", "--sandbox", "inline", "--model", "openai/stub", "--api-base", server.url, "--json"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    finally:
        server.close()
    assert out.returncode == 0, out.stderr[-2000:]
    db = sqlite3.connect(tmp_path / ".mstar" / "llm-cache.db")
    rows = db.execute("SELECT run, purpose, ms FROM calls").fetchall()
    assert rows and all(r.startswith("eval-") for r, _, _ in rows)
    assert {p for _, p, _ in rows} == {"answer", "judge"} and all(ms > 0 for _, _, ms in rows)
    assert all(r["max_tokens"] in (64, 8) for r in server.requests)


def test_a_timed_out_call_is_not_retried_and_is_recorded_stub_llm(tmp_path):
    """A slow local server keeps generating after the client gives up: a retry would queue a second
    generation behind the first. The failed call is in the ledger, with its time and its error."""
    import time as _time

    from mstar.broker import LLMCallError

    def slow(body):
        _time.sleep(3)
        return "late"

    server = StubServer(slow)
    try:
        b = Broker("openai/stub", api_base=server.url, timeout_s=1.0, cache_path=tmp_path / "c.db", run_id="t")
        with pytest.raises(LLMCallError, match="timed out"):
            b.ask("hi", "answer", {})
        _time.sleep(3)
        assert len(server.requests) == 1
    finally:
        server.close()
    [rec] = b.calls()
    assert rec.error and "timed out" in rec.error and rec.ms >= 900 and rec.prompt_tokens == 0
