"""The engine in process: determinism, exact resume, stops, failure handling, islands, LLM budget."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from evolve_helpers import JitterOperator, ScriptedLLMOperator, TinyTask

from mstar.broker import LLMReply
from mstar.evolve.core.config import EvolveConfig, StopConfig
from mstar.evolve.core.engine import Engine
from mstar.evolve.core.live import View
from mstar.evolve.operators.base import OperatorFailed, Proposal
from mstar.evolve.store.run_store import RunStore

SEEDS = ["bm25", "bm25_neighbors", "recency"]


def config(run_id: str = "r", **kw: Any) -> EvolveConfig:
    stops = kw.pop("stops", StopConfig(generations=3))
    base = dict(run_id=run_id, task="tiny", budget=20, seeds=SEEDS, operators={"jitter": 1.0}, children_per_gen=4,
                islands=2, island_size=5, migrate_every=2, final_k=2, sandbox="inline")
    base.update(kw)
    return EvolveConfig(stops=stops, **base)


def run(tmp_path, cfg: EvolveConfig, operators: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    ops = operators or {"jitter": JitterOperator()}
    return Engine(cfg, tmp_path / cfg.run_id, operators=ops, suite=TinyTask(), **kw).run()


def lineage(run_dir) -> list[tuple]:
    s = RunStore(run_dir)
    try:
        return [(p.generation, p.slot, p.operator, tuple(p.parents), p.program, p.outcome) for p in s.proposals()]
    finally:
        s.close()


def eval_rows(run_dir) -> dict[tuple, float]:
    c = sqlite3.connect(run_dir / "run.db")
    try:
        return {(r[0], r[1], r[2]): r[3] for r in
                c.execute("SELECT program, split, episode, created FROM evaluations WHERE probe=''")}
    finally:
        c.close()


def test_same_seed_same_lineage_and_a_complete_summary(tmp_path):
    a = run(tmp_path, config("a"))
    b = run(tmp_path, config("b"))
    la, lb = lineage(tmp_path / "a"), lineage(tmp_path / "b")
    assert la == lb and len(la) == 12
    assert [x[4] for x in la] == [x[4] for x in lb]  # program ids, in order
    assert run(tmp_path, config("c", seed=1)) and lineage(tmp_path / "c") != la
    assert a["best"] == b["best"] and a["stop_reason"] == "generation limit (3)"
    assert set(a["seeds"]) == set(SEEDS) and all(v["test"] is not None for v in a["seeds"].values())
    assert a["best"]["val"] is not None and a["best"]["test"] is not None
    assert (tmp_path / "a" / "best.py").read_text().startswith("# mstar run a:")
    store = RunStore(tmp_path / "a")
    outcomes = {e[2]["outcome"] for e in store.events("proposal")}
    assert outcomes <= {"accepted", "rejected-novelty", "rejected-cascade", "failed"}
    assert len(store.events("proposal")) == 12 and len(store.events("generation")) == 3
    assert len(store.events("final")) == 1
    # The pick (mstar/evolve/core/selection.py) compares programs per val probe: those are in the store.
    val_eps = {e.id for e in TinyTask().episodes("val")}
    rows = list(store.probe_metrics(a["best"]["id"], "val"))
    assert {r[0] for r in rows} == val_eps and len(rows) == sum(len(e.probes) for e in TinyTask().episodes("val"))
    best, leader = a["best"], max(a["seeds"].values(), key=lambda s: s["val"])
    assert best["val"] >= leader["val"] or best["train"] > leader["train"]  # a tie on val goes to train


def test_resume_after_a_stop_continues_exactly_and_reuses_evaluations(tmp_path):
    run(tmp_path, config("full", stops=StopConfig(generations=4)))
    first = run(tmp_path, config("part", stops=StopConfig(generations=4, max_evals=24)))
    assert first["stop_reason"].startswith("evaluation limit")
    before = eval_rows(tmp_path / "part")
    cfg = EvolveConfig.load(tmp_path / "part")
    cfg.stops = StopConfig(generations=4)
    second = run(tmp_path, cfg)
    assert second["stop_reason"] == "generation limit (4)"
    assert lineage(tmp_path / "part") == lineage(tmp_path / "full")
    after = eval_rows(tmp_path / "part")
    assert all(after[k] == t for k, t in before.items())  # finished evaluations were reused, not redone
    assert second["best"] == run(tmp_path, config("full2", stops=StopConfig(generations=4)))["best"]


def test_resume_of_a_finished_run_does_no_new_work(tmp_path):
    first = run(tmp_path, config("a"))
    before = eval_rows(tmp_path / "a")
    again = run(tmp_path, EvolveConfig.load(tmp_path / "a"))
    assert eval_rows(tmp_path / "a") == before
    assert again["best"] == first["best"] and again["seeds"] == first["seeds"]


def test_stop_file_stops_gracefully_once(tmp_path):
    class StopAfterTwo(JitterOperator):
        calls = 0

        def propose(self, parents, ctx):
            StopAfterTwo.calls += 1
            if StopAfterTwo.calls == 2:
                (tmp_path / "s" / "STOP").write_text("")
            return super().propose(parents, ctx)

    out = run(tmp_path, config("s", stops=StopConfig(generations=50)), operators={"jitter": StopAfterTwo()})
    assert out["stop_reason"] == "stop file (STOP)"
    assert not (tmp_path / "s" / "STOP").exists()
    assert out["generations"] == 0 and out["best"]["test"] is not None
    assert len(lineage(tmp_path / "s")) == 2  # proposals made are kept (pending) for the resume


def test_patience_stops_a_stale_run(tmp_path):
    out = run(tmp_path, config("p", stops=StopConfig(patience=2, generations=30)))
    assert out["stop_reason"].startswith("no improvement for 2 generations") or out["generations"] == 30
    events = RunStore(tmp_path / "p").events("generation")
    assert len(events) == out["generations"]
    if out["generations"] < 30:  # the last `patience` generations did not beat what came before them
        before = events[-3][2]["best"] if len(events) >= 3 else max(v["train"] for v in out["seeds"].values())
        assert events[-1][2]["best"] == events[-2][2]["best"] == before


def test_time_and_evaluation_limits(tmp_path):
    out = run(tmp_path, config("t", stops=StopConfig(max_minutes=1e-6)))
    assert out["stop_reason"].startswith("time limit") and out["generations"] == 0
    assert out["seeds"]["bm25"]["test"] is not None  # the report is still made
    out = run(tmp_path, config("e", stops=StopConfig(max_evals=20)))
    assert out["stop_reason"] == "evaluation limit (20)"


def test_failures_of_operators_and_candidates_are_recorded_and_the_run_goes_on(tmp_path):
    class Mixed:
        name, needs_llm, arity = "mixed", False, 1
        n = 0

        def propose(self, parents, ctx):
            Mixed.n += 1
            kind = Mixed.n % 4
            src = parents[0].source
            if kind == 1:
                raise OperatorFailed("patch_failed", "SEARCH block not found")
            if kind == 2:
                return Proposal(source="def broken(:\n", operator="mixed", parents=[parents[0].id])
            if kind == 3:
                bad = src.replace("    def read(self, query):", "    def read(self, query):\n        raise KeyError('x')")
                return Proposal(source=bad, operator="mixed", parents=[parents[0].id])
            raise ValueError("operator bug")

    out = run(tmp_path, config("f", operators={"mixed": 1.0}, stops=StopConfig(generations=1)),
              operators={"mixed": Mixed()})
    store = RunStore(tmp_path / "f")
    reasons = [p.reason for p in store.proposals()]
    assert all(p.outcome == "failed" for p in store.proposals())
    assert reasons[0].startswith("patch_failed: SEARCH block")
    assert reasons[1].startswith("invalid:")
    assert reasons[2].startswith("crash:") and "KeyError" in reasons[2]
    assert reasons[3].startswith("operator_error: ValueError")
    assert out["best"]["id"] is not None  # the seeds still make a result


def test_children_land_on_their_island_and_migration_is_logged(tmp_path):
    run(tmp_path, config("i", islands=3, children_per_gen=6, migrate_every=1, stops=StopConfig(generations=2)))
    store = RunStore(tmp_path / "i")
    assert [p.island for p in store.proposals()] == [0, 1, 2] * 4
    gens = store.events("generation")
    assert len(gens) == 2 and all(len(g[2]["islands"]) == 3 for g in gens)
    assert store.events("seeds")


def test_llm_operator_left_out_offline(tmp_path):
    out = run(tmp_path, config("o", operators={"jitter": 0.5, "scripted_llm": 0.5}, stops=StopConfig(generations=1)),
              operators={"jitter": JitterOperator(), "scripted_llm": ScriptedLLMOperator()})
    assert {p.operator for p in RunStore(tmp_path / "o").proposals()} == {"jitter"}
    assert out["usd"] == 0


def test_budget_stop_mock_llm(tmp_path):
    """Scripted replies with a fixed mocked cost: the ledger refuses the call that could cross the budget."""
    calls: list[str] = []

    def scripted(messages, **kw):
        calls.append(messages[-1]["content"])
        return LLMReply(text=f"reply {len(calls)}", prompt_tokens=100, completion_tokens=20, cost=0.004, model="mock")

    cfg = config("b", operators={"scripted_llm": 1.0}, model="mock", stops=StopConfig(generations=20, budget_usd=0.01))
    out = run(tmp_path, cfg, operators={"scripted_llm": ScriptedLLMOperator()}, llm_backend=scripted)
    assert len(calls) == 2 and out["usd"] == pytest.approx(0.008) and out["usd"] <= 0.01
    assert out["stop_reason"].startswith("budget spent")
    store = RunStore(tmp_path / "b")
    assert store.llm_totals() == (240, pytest.approx(0.008))
    assert store.proposals()[2].outcome == "failed" and store.proposals()[2].reason.startswith("budget")


def test_budget_stop_with_litellm_mock_response_mock_llm(tmp_path):
    """The real litellm backend with ``mock_response``: no network, costs from litellm's price table."""
    from mstar.broker import LiteLLMBackend

    class MockReplies(ScriptedLLMOperator):
        def propose(self, parents, ctx):
            real = ctx.llm
            # Capped: the budget holds each call's worst case (prompt + max_tokens) until it is paid.
            ctx.llm = lambda messages, **kw: real(messages, mock_response="raise top_k", max_tokens=5, **kw)
            return super().propose(parents, ctx)

    backend = LiteLLMBackend("gpt-4o-mini")
    per_call = backend([{"role": "user", "content": "x"}], mock_response="raise top_k", max_tokens=5).cost
    assert per_call > 0
    cfg = config("l", operators={"scripted_llm": 1.0}, model="gpt-4o-mini",
                 stops=StopConfig(generations=20, budget_usd=per_call * 3.5))
    out = run(tmp_path, cfg, operators={"scripted_llm": MockReplies()}, llm_backend=backend)
    assert out["stop_reason"].startswith("budget spent") and out["usd"] <= per_call * 3.5
    assert out["usd"] == pytest.approx(per_call * 3)


def test_inline_executor_yields_as_it_goes_and_runs_nothing_unconsumed():
    from mstar.evaluate import EvalConfig
    from mstar.evolve.execution.executor import EvalJob, make_executor
    from mstar.harness.loader import load_program
    from mstar.sandbox.inline import InlineBackend
    from mstar.toolkit import Toolkit

    eps = {e.id: e for e in TinyTask().all}
    started: list[str] = []
    ex = make_executor("inline", episodes=eps, backend=InlineBackend(), toolkit=Toolkit(),
                       config=EvalConfig(budget=20), on_start=lambda j: started.append(j.episode_id))
    prog = load_program("bm25")
    jobs = [EvalJob("p", prog.source, {k: s.default for k, s in prog.knob_specs.items()}, ep) for ep in eps]
    it = ex.map(jobs)
    first = next(it)
    assert first.job.episode_id == "tiny-0" and first.result.probes and started == ["tiny-0"]
    it.close()  # the consumer stops (Ctrl-C): no further job starts
    assert started == ["tiny-0"]
    assert len(list(ex.map(jobs[:3]))) == 3


def test_ledger_caches_records_and_refuses_before_crossing(tmp_path):
    from mstar.errors import BudgetExceeded, LLMUnavailable
    from mstar.evolve.store.ledger import Ledger

    store = RunStore(tmp_path)
    replies = iter(["a", "b", "c"])
    ledger = Ledger(store, lambda m, **kw: LLMReply(text=next(replies), prompt_tokens=3, completion_tokens=1,
                                                    cost=0.3), "mock", budget_usd=1.0)
    llm = ledger.fn("operator:x")
    assert llm("q1") == "a" and llm("q1") == "a"  # the second is a cache hit: free
    assert llm("q2") == "b" and llm("q3") == "c"
    with pytest.raises(BudgetExceeded):
        llm("q4")  # 0.9 spent + 0.3 could cross 1.0
    assert ledger.exhausted and ledger.spent == pytest.approx(0.9)
    rows = store.conn.execute("SELECT purpose, cost, cached FROM llm_calls ORDER BY id").fetchall()
    assert [r[2] for r in rows] == [0, 1, 0, 0] and rows[0][0] == "operator:x"
    with pytest.raises(LLMUnavailable):
        Ledger(store, None).call("x", "hi")


def test_ledger_is_the_broker_harness_calls_are_allow_listed(tmp_path):
    """A harness in an evolve run must not redirect the host's call (``api_base``, ``base_url``: the key
    would go with it) or pick the model; the host's own callers (operators, scoring) are trusted."""
    from mstar.evolve.store.ledger import Ledger

    seen: list[dict] = []
    ledger = Ledger(RunStore(tmp_path), lambda m, **kw: seen.append(kw) or LLMReply(text="ok"), "mock")
    for bad in ({"api_base": "http://evil.example"}, {"base_url": "http://evil.example"}, {"model": "gpt-4"},
                {"api_key": "x"}, {"mock_response": "fake"}):
        with pytest.raises(ValueError, match="not allowed"):
            ledger.fn("harness")("hi", **bad)
    assert seen == []
    assert ledger.fn("harness")("hi", temperature=0, max_tokens=5) == "ok"
    assert ledger.fn("operator:x")("hi", mock_response="fine for host code") == "ok"
    # every call is capped by its purpose: the harness's own 5 is kept, the operator's call gets 4,096
    assert seen == [{"temperature": 0, "max_tokens": 5}, {"mock_response": "fine for host code", "max_tokens": 4096}]


def test_diagnoses_reach_the_store_and_the_parent_views(tmp_path, monkeypatch):
    """With a diagnosis module installed, missed probes are diagnosed, stored, and shown to operators."""

    from mstar.evolve.execution import cascade
    from mstar.evolve.operators.base import FailedProbe

    def diagnose(episode, result, budget):
        return [FailedProbe(probe_id=p.probe_id, episode_id=episode.id, category=p.category, question="?",
                            stage="not_retrieved") for p in result.probes if (p.evidence_recall or 0) < 1]

    monkeypatch.setattr(cascade, "diagnose", diagnose)
    seen: list[int] = []

    class Looks(JitterOperator):
        def propose(self, parents, ctx):
            seen.append(len(parents[0].failures))
            assert all(f.stage == "not_retrieved" for f in parents[0].failures)
            return super().propose(parents, ctx)

    run(tmp_path, config("d", stops=StopConfig(generations=1)), operators={"jitter": Looks()})
    assert seen and max(seen) > 0
    n = RunStore(tmp_path / "d").conn.execute("SELECT COUNT(*) FROM evaluations WHERE diagnosis IS NOT NULL").fetchone()[0]
    assert n > 0


def test_a_failing_diagnosis_is_logged_and_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    """A bug in the diagnosis costs guidance, never the evaluation, and is never silent."""
    from mstar.evolve.execution import cascade

    def broken(episode, result, budget):
        raise RuntimeError("diagnosis bug")

    monkeypatch.setattr(cascade, "diagnose", broken)
    logged: list[str] = []
    view = View(live=False)
    monkeypatch.setattr(view, "log", logged.append)
    summary = run(tmp_path, config("e", stops=StopConfig(generations=1)), view=view)
    assert summary["best"]["train"] is not None  # every evaluation stored and scored
    events = RunStore(tmp_path / "e").events("diagnosis_error")
    assert events and all("RuntimeError: diagnosis bug" in e[2]["error"] for e in events)
    assert sum("diagnosis of" in line and "diagnosis bug" in line for line in logged) == 1


def test_the_operator_registry_is_one_mapping_of_names_to_factories(monkeypatch):
    from mstar.errors import UsageError
    from mstar.evolve.operators import registry

    monkeypatch.setitem(registry.OPERATORS, "jit", JitterOperator)
    assert isinstance(registry.load_operator("jit"), JitterOperator)
    assert set(registry.load_operators(["jit", "tune"])) == {"jit", "tune"}
    with pytest.raises(UsageError, match="unknown operator 'nope'"):
        registry.load_operator("nope")

    def broken():
        raise ImportError("no module named optuna_x")

    monkeypatch.setitem(registry.OPERATORS, "broken", broken)
    with pytest.raises(UsageError, match="'broken' cannot be loaded: ImportError: no module named optuna_x"):
        registry.load_operator("broken")


def test_each_seed_is_reported_as_soon_as_its_train_score_is_complete(tmp_path, monkeypatch):
    """The seed phase of a large suite takes minutes: a seed's line is printed when its own train episodes
    are done (before the next seed's evaluations), not after every seed, and not again on resume."""
    logged: list[tuple[str, int]] = []
    ticks: list[int] = []
    view = View(live=False)
    monkeypatch.setattr(view, "log", lambda line: logged.append((line, len(ticks))))
    monkeypatch.setattr(view, "tick", lambda: ticks.append(1))
    cfg = config("p", stops=StopConfig(generations=1))
    run(tmp_path, cfg, view=view)
    lines = [(line, n) for line, n in logged if line.startswith("seed ")]
    assert [line.split()[1] for line, _ in lines] == SEEDS
    n_train = len(TinyTask().episodes("train"))
    # Printed right after the seed's last train evaluation (the inline executor runs seed after seed).
    assert [n for _, n in lines] == [n_train, 2 * n_train, 3 * n_train]
    assert [f"({i}/3 seeds" in line for i, (line, _) in enumerate(lines, 1)] == [True] * 3

    logged.clear()
    run(tmp_path, cfg.model_copy(update={"stops": StopConfig(generations=2)}), view=view)
    assert not [line for line, _ in logged if line.startswith("seed ")]  # a resumed run is past its seed phase
