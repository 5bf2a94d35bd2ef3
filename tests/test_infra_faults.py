"""Infrastructure faults are not candidate failures: the pause-and-retry policy (``mstar.faults``), and
the hostile side -- a harness that ends its own sandbox the ways an engine outage would must be scored
as the candidate's failure, never paused and retried as the engine's.

The engine-restart and node-loss runs are in test_infra_faults_docker.py and test_infra_faults_ray.py.
The policy tests drive ``FaultPause`` with a fake clock: it is pure arithmetic over time, and waiting
real minutes for a backoff proves nothing more.
"""

from __future__ import annotations

import time

import pytest
from test_sandbox_support import LABELS, LIMITS, episode, make_backend, program

from mstar.errors import InfrastructureError
from mstar.evaluate import EvalConfig
from mstar.evolve.execution.executor import EvalJob, InlineExecutor
from mstar.faults import FaultPause
from mstar.toolkit import Toolkit


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(round(s, 6))
        self.t += s


def pause(clock: Clock, **kw) -> tuple[FaultPause, list[str], list[tuple[str, dict]]]:
    lines: list[str] = []
    events: list[tuple[str, dict]] = []
    f = FaultPause(log=lines.append, on_event=lambda k, d: events.append((k, d)), sleep=clock.sleep, clock=clock, **kw)
    return f, lines, events


ERR = InfrastructureError("docker", "the Docker engine stopped answering (ConnectionError)")


def test_backoff_doubles_to_a_cap_and_a_result_ends_the_pause():
    clock = Clock()
    f, lines, events = pause(clock, limit_s=1000, first_s=1, max_delay_s=8)
    for _ in range(6):
        f.fault(ERR, "job")
    assert clock.slept == [1, 2, 4, 8, 8, 8]
    assert f.paused and len(lines) == 1 and lines[0].startswith("paused: docker: the Docker engine stopped")
    f.ok("job")
    assert not f.paused and lines[-1] == "resumed after a 31 s pause; nothing was lost"
    assert [k for k, _ in events] == ["pause", "resume"] and f.outages == 1 and f.paused_s == 31


def test_jobs_failing_together_share_one_wait():
    clock = Clock()
    f, _, _ = pause(clock, limit_s=1000, first_s=2)
    f.fault(ERR, "a")  # the first job sets the retry time...
    for k in "bcd":  # ...the others failing at that moment wait for the same time, not 2 s each
        f.fault(ERR, k)
    assert clock.slept == [2]


def test_an_outage_past_the_limit_stops_with_the_cause_and_the_reason():
    clock = Clock()
    f, _, events = pause(clock, limit_s=10, first_s=4)
    f.fault(ERR, "job")  # waits 4 s
    with pytest.raises(InfrastructureError) as e:
        f.fault(ERR, "job")  # would wait 8 s: cut at the limit, then stop
    assert sum(clock.slept) == 10  # the last wait is cut at the limit, not a whole backoff step
    assert e.value.what == "docker" and "stopped answering" in str(e.value) and "lasted 10 s" in str(e.value)
    assert events[-1][0] == "infra_stop" and not f.paused


def test_one_job_meeting_the_fault_again_and_again_stops_the_run():
    clock = Clock()
    f, _, _ = pause(clock, limit_s=10**6, max_attempts=3, first_s=0.01)
    for _ in range(3):
        f.fault(ERR, "job")
        f.ok("other")  # other jobs succeed in between: the outage "ends", this job's count does not
    with pytest.raises(InfrastructureError, match="met it 4 times in a row"):
        f.fault(ERR, "job")


def test_a_probe_retries_as_soon_as_the_engine_answers():
    clock = Clock()
    f, _, _ = pause(clock, limit_s=100, first_s=30)
    answers = iter([False, False, True])
    f.fault(ERR, "job", probe=lambda: next(answers))
    assert sum(clock.slept) == pytest.approx(1.0)  # two probe periods, not the 30 s backoff step

    clock.slept.clear()
    f.fault(ERR, "other", probe=lambda: True)  # first try of this job: at once
    f.fault(ERR, "other", probe=lambda: True)  # an engine that answers all along: the fault is elsewhere,
    assert sum(clock.slept) == pytest.approx(30)  # so the 2nd round's backoff (30 s, the cap) is waited out

    def broken() -> bool:
        raise OSError("no engine")

    with pytest.raises(InfrastructureError):  # a probe that raises means "not yet", until the limit
        f.fault(ERR, "job", probe=broken)


# --- hostile: a candidate cannot pass its own failure off as the engine's --------------------------
@pytest.mark.docker
@pytest.mark.parametrize("how", ["exit137", "exit143", "close_stdout", "sigkill"])
def test_a_harness_faking_an_engine_loss_is_scored_as_its_own_failure(how):
    backend = make_backend("docker", guard=False, warm=False)  # no guard: the OS layer and the host decide
    clock = Clock()
    faults, lines, _ = pause(clock, limit_s=60)
    hostile = program("fake_engine_loss", {"how": how})
    ep = episode()
    ex = InlineExecutor({ep.id: ep}, backend, Toolkit(), EvalConfig(limits=LIMITS, collect_dump=False),
                        labels=LABELS, faults=faults)
    ex._programs["hostile"] = hostile  # as if it had got past the static check: the host must still judge it
    try:
        [jr] = list(ex.map([EvalJob("hostile", hostile.source, {}, ep.id)]))
    finally:
        backend.close()
    assert faults.outages == 0 and not lines and not clock.slept  # never paused, never retried
    if how == "sigkill":  # PID 1 of the container ignores a SIGKILL from inside: the harness just goes on
        assert jr.result.failure is None
    else:
        assert jr.result.failure is not None and jr.result.failure[0] in ("crash", "oom"), jr.result.failure
        assert all(p.error for p in jr.result.probes)


# --- the broker actor gone mid-evaluation (Ray) -------------------------------------------------------
LLM_HARNESS = '''
INSTRUCTIONS = "Use the notes."
KNOBS = {}


class Memory:
    def __init__(self, toolkit, knobs):
        self.toolkit = toolkit
        self.events = []
        self.note = ""

    def write(self, event):
        if not self.events:
            try:
                self.note = self.toolkit.llm("summarise the first turn")
            except Exception:  # a harness that copes with model errors: it must never see this one
                self.note = "COPED"
        self.events.append(event)

    def read(self, query):
        if self.note == "COPED":  # what a harness may do with a model error: score worse
            return {"context": "", "items": []}
        items = [{"text": e["text"], "sources": [e["id"]]} for e in self.events]
        return {"context": "\\n".join(i["text"] for i in items), "items": items}
'''


@pytest.fixture
def local_ray():
    from mstar.evolve.execution.ray_executor import start_ray, stop_ray

    started, temp = start_ray(1)
    try:
        yield
    finally:
        if started:
            stop_ray(temp)


@pytest.mark.docker
@pytest.mark.slow
def test_the_broker_actor_dying_mid_call_pauses_the_job_and_the_harness_never_sees_it(tmp_path, local_ray):
    """The model is a scripted function (never a real one) run in the broker actor; its first two calls
    kill the actor's process, which exhausts Ray's own retry of the call: the worker's request fails."""
    from mstar.broker import LLMReply
    from mstar.evolve.execution.ray_executor import RayExecutor
    from mstar.evolve.store.ledger import Ledger
    from mstar.evolve.store.run_store import RunStore

    make_backend("docker")  # skips when no engine answers; builds the image if missing
    marks = tmp_path / "deaths"
    marks.mkdir()

    def dying(messages, **kw):
        import os
        from pathlib import Path

        n = len(list(Path(marks).iterdir()))
        if n < 2:
            (Path(marks) / str(n)).touch()
            os._exit(1)  # the broker actor's process dies in the middle of the call
        return LLMReply(text="a note", prompt_tokens=12, completion_tokens=4, cost=0.25, model="scripted")

    store = RunStore(tmp_path / "run")
    ledger = Ledger(store, dying, "scripted", budget_usd=10.0)
    clock = Clock()
    faults, lines, _ = pause(clock, limit_s=120, first_s=1)
    faults.sleep = time.sleep  # a real wait: the actor restarts while the driver backs off
    faults.clock = time.monotonic
    ep = episode()
    ex = RayExecutor({ep.id: ep}, "docker", Toolkit(llm=ledger.fn("harness")), EvalConfig(collect_dump=False),
                     meter=ledger, labels=LABELS, faults=faults)
    try:
        (jr,) = list(ex.map([EvalJob("llm", LLM_HARNESS, {}, ep.id, "train")]))
    finally:
        ex.close()
        store.close()
    assert len(list(marks.iterdir())) == 2  # the actor really died twice
    assert faults.outages == 1 and lines[0].startswith("paused: broker: the LLM broker actor does not answer")
    assert jr.result.failure is None and not any(p.error for p in jr.result.probes)
    assert [p.evidence_recall for p in jr.result.probes] == [1.0, 1.0]  # the harness never saw the fault


# --- an operator whose validation meets an engine fault ------------------------------------------------
class EngineGoneOperator:
    """Stands for any operator whose children's smoke test runs in the sandbox when the engine is gone
    (past the run's patience): what reaches the breeder is the executor's InfrastructureError."""

    name = "engine_gone"
    needs_llm = False
    arity = 1

    def propose(self, parents, ctx):
        raise InfrastructureError("docker", "the Docker engine stopped answering (not recovered: test)")


def test_an_engine_fault_inside_an_operator_stops_the_run_resumable_not_a_failed_proposal(tmp_path):
    from evolve_helpers import TinyTask

    from mstar.evolve.core.config import EvolveConfig, StopConfig
    from mstar.evolve.core.engine import Engine
    from mstar.evolve.store.run_store import RunStore

    cfg = EvolveConfig(run_id="op", task="tiny", budget=20, seeds=["bm25", "recency"], operators={"engine_gone": 1.0},
                       children_per_gen=2, islands=1, sandbox="inline", executor="inline", embedder="hashing",
                       stops=StopConfig(generations=2))
    with pytest.raises(InfrastructureError) as e:
        Engine(cfg, tmp_path / "op", operators={"engine_gone": EngineGoneOperator()}, suite=TinyTask()).run()
    assert f"Continue with: mstar evolve --resume {tmp_path / 'op'}" in str(e.value)
    store = RunStore(tmp_path / "op")
    try:
        assert store.proposals() == []  # nothing recorded as the child's failure
        assert store.count_episodes() == 10  # both seeds on the 5 train episodes: kept
    finally:
        store.close()
