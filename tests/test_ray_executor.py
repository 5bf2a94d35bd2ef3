"""The Ray executor on a real local Ray instance (one per module): end to end, worker death, deadlines,
the generator protocol, and the same result as ``inline``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from evolve_helpers import JitterOperator, TinyTask
from test_sandbox_support import descendants

from mstar.broker import LLMReply
from mstar.evaluate import EvalConfig
from mstar.evolve.core.config import EvolveConfig, StopConfig
from mstar.evolve.core.engine import Engine
from mstar.evolve.execution.executor import EvalJob, InlineExecutor
from mstar.evolve.store.ledger import Ledger
from mstar.evolve.store.run_store import RunStore
from mstar.harness.knobs import defaults
from mstar.harness.loader import load_program
from mstar.sandbox.base import SessionLimits
from mstar.toolkit import Toolkit

WORKERS = 2


@pytest.fixture(scope="module")
def ray_instance():
    from mstar.evolve.execution.ray_executor import start_ray, stop_ray

    started, temp = start_ray(WORKERS)
    try:
        yield
    finally:
        if started:
            stop_ray(temp)


@pytest.fixture(scope="module")
def episodes():
    return {e.id: e for e in TinyTask().all}


def ray_executor(episodes, backend: str = "inline", **kw: Any):
    from mstar.evolve.execution.ray_executor import RayExecutor

    kw.setdefault("toolkit", Toolkit())
    kw.setdefault("config", EvalConfig(budget=20))
    return RayExecutor(episodes, backend, **kw)


def seed_jobs(name: str, episode_ids, tag: str = "") -> list[EvalJob]:
    p = load_program(name)
    return [EvalJob(name, p.source, defaults(p.knob_specs), e, "train", tag=tag) for e in episode_ids]


def recall(jr) -> list[float | None]:
    return [p.evidence_recall for p in jr.result.probes]


# --- the engine, end to end ---------------------------------------------------------------------------
def evolve(tmp_path: Path, run_id: str, executor: str, sandbox: str = "inline", generations: int = 2) -> dict:
    # `dense` embeds every turn: scores agree across executors only if every worker embeds the same way.
    cfg = EvolveConfig(run_id=run_id, task="tiny", budget=20, seeds=["bm25", "bm25_neighbors", "recency", "dense"],
                       operators={"jitter": 1.0}, children_per_gen=3, islands=2, island_size=5, final_k=2,
                       sandbox=sandbox, executor=executor, workers=WORKERS, embedder="hashing",
                       stops=StopConfig(generations=generations))
    return Engine(cfg, tmp_path / run_id, operators={"jitter": JitterOperator()}, suite=TinyTask()).run()


def _untimed(metrics: str) -> dict:
    """Metrics without the clock readings (wall_s, *_ms*), which differ between any two runs."""
    return {k: v for k, v in json.loads(metrics).items() if k != "wall_s" and "ms" not in k.split("_")}


def lineage_and_scores(run_dir: Path) -> tuple[list, dict]:
    s = RunStore(run_dir)
    try:
        lin = [(p.generation, p.slot, tuple(p.parents), p.program, p.outcome) for p in s.proposals()]
    finally:
        s.close()
    c = sqlite3.connect(run_dir / "run.db")
    try:
        scores = {(r[0], r[1], r[2], r[3]): _untimed(r[4]) for r in
                  c.execute("SELECT program, split, episode, probe, metrics FROM evaluations")}
    finally:
        c.close()
    return lin, scores


def test_same_seed_same_lineage_and_scores_on_inline_and_ray(tmp_path, ray_instance):
    a = evolve(tmp_path, "inline", "inline")
    b = evolve(tmp_path, "ray", "ray")
    la, sa = lineage_and_scores(tmp_path / "inline")
    lb, sb = lineage_and_scores(tmp_path / "ray")
    assert len(la) == 6 and la == lb
    # Every metric of every probe; latencies are in their own columns, not in ``metrics``.
    assert sa.keys() == sb.keys() and len(sa) > 100
    mismatched = [k for k in sa if sa[k] != sb[k]]
    assert not mismatched, mismatched[:3]
    assert a["best"] == b["best"] and b["stop_reason"] == "generation limit (2)"
    for run in ("inline", "ray"):
        assert json.loads((tmp_path / run / "config.json").read_text())["embedder"] == "hashing"


def test_dense_scores_the_same_inline_and_on_ray(episodes, ray_instance):
    from mstar.embedders import HashingEmbedder

    def scores(results) -> dict:
        return {(jr.job.episode_id, p.probe_id): (p.evidence_recall, p.ndcg, p.context_tokens, p.listed)
                for jr in results for p in jr.result.probes}

    jobs = seed_jobs("dense", sorted(episodes))
    cfg = EvalConfig(budget=20)
    from mstar.sandbox.registry import get_backend

    inline = scores(InlineExecutor(episodes, get_backend("inline"), Toolkit(embed=HashingEmbedder()), cfg).map(jobs))
    ex = ray_executor(episodes, "inline", toolkit=Toolkit(embed=HashingEmbedder()), config=cfg)
    try:
        on_ray = scores(ex.map(jobs))
    finally:
        ex.close()
    failed = {k: v for k, v in on_ray.items() if v[2] == 0}
    assert on_ray == inline and len(inline) > 20, f"episodes failed on ray: {sorted({k[0] for k in failed})}"
    assert any(r for r, *_ in inline.values())  # dense found evidence: the embeddings did something


def test_evolve_end_to_end_on_ray_with_the_process_sandbox(tmp_path, ray_instance):
    out = evolve(tmp_path, "proc", "ray", sandbox="process", generations=1)
    assert out["stop_reason"] == "generation limit (1)"
    assert out["best"]["test"] is not None and out["evaluations"] >= 15
    lin, scores = lineage_and_scores(tmp_path / "proc")
    assert len(lin) == 3 and all(o in {"accepted", "rejected-novelty", "rejected-cascade"} for *_, o in lin)


# --- failures ------------------------------------------------------------------------------------------
SLOW_LLM_HARNESS = '''
import time

INSTRUCTIONS = "Use the notes."
KNOBS = {}


class Memory:
    def __init__(self, toolkit, knobs):
        self.toolkit = toolkit
        self.events = []
        self.note = ""

    def write(self, event):
        if not self.events:
            self.note = self.toolkit.llm("summarise the first turn")
            time.sleep(6)  # the test kills this worker here, after the paid call
        self.events.append(event)

    def read(self, query):
        items = [{"text": e["text"], "sources": [e["id"]]} for e in self.events[-3:]]
        return {"context": "\\n".join(i["text"] for i in items), "items": items}
'''


def _eval_workers() -> list[int]:
    """PIDs of this test's Ray workers running an evaluation (Ray titles them after the task while it runs).
    Only descendants of this test process: the local Ray instance this module starts runs its raylet (and
    so its workers) under it; another Ray on the machine is not ours to kill."""
    out = []
    for pid in descendants():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::mstar_eval"):
                out.append(pid)
        except OSError:
            pass
    return out


def test_a_worker_killed_mid_task_is_retried_and_its_llm_call_is_not_paid_twice(tmp_path, episodes, ray_instance):
    def scripted(messages, **kw):  # the model: a scripted function in the broker actor, never a real one
        return LLMReply(text="a note", prompt_tokens=12, completion_tokens=4, cost=0.25, model="scripted")

    store = RunStore(tmp_path / "run")
    ledger = Ledger(store, scripted, "scripted", budget_usd=10.0)
    ex = ray_executor(episodes, "inline", toolkit=Toolkit(llm=ledger.fn("harness")), meter=ledger)
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            paid = sqlite3.connect(store.path).execute("SELECT COUNT(*) FROM llm_calls WHERE cached=0").fetchone()[0]
            pids = _eval_workers()
            if paid and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        job = EvalJob("slow", SLOW_LLM_HARNESS, {}, "tiny-0", "train")
        (jr,) = list(ex.map([job]))
    finally:
        t.join(5)
        ex.close()
    assert killed, "the evaluation worker was never seen running"
    assert jr.result.failure is None and len(jr.result.probes) == 8
    rows = sqlite3.connect(store.path).execute("SELECT cached, cost FROM llm_calls ORDER BY id").fetchall()
    assert rows == [(0, 0.25), (1, 0.0)]  # paid once, then answered from the cache on the retry
    assert jr.llm_cost == pytest.approx(0.25) and jr.llm_tokens == 16
    assert ledger.spent == pytest.approx(0.25) and ledger.tokens == 16
    store.close()


HUNG_HARNESS = '''
import time

INSTRUCTIONS = "x"
KNOBS = {}


class Memory:
    def __init__(self, toolkit, knobs):
        self.n = 0

    def write(self, event):
        self.n += 1

    def read(self, query):
        time.sleep(3600)
        return {"context": "", "items": []}
'''


def test_a_hung_sandbox_is_killed_at_its_deadline_and_the_others_finish(episodes, ray_instance):
    # 10 s: long enough for a loaded machine to start a sandbox (load is a call too), far below the hour.
    cfg = EvalConfig(budget=20, limits=SessionLimits(call_timeout_s=10.0, episode_timeout_s=90.0))
    ex = ray_executor(episodes, "process", config=cfg)
    jobs = [EvalJob("hung", HUNG_HARNESS, {}, "tiny-0", "train"), *seed_jobs("bm25", ["tiny-1"])]
    try:
        t0 = time.monotonic()
        out = {jr.job.program_id: jr for jr in ex.map(jobs)}
        wall = time.monotonic() - t0
    finally:
        ex.close()
    hung = out["hung"].result
    assert hung.failure is not None and hung.failure[0] == "timeout", hung.failure
    assert all(p.error and p.error.startswith("timeout") for p in hung.probes)
    assert out["bm25"].result.failure is None and any(recall(out["bm25"]))
    assert wall < 90  # killed by the 10 s call deadline, not left running for the hour it asked for


def test_forged_protocol_lines_fail_only_their_candidate_on_ray(episodes, ray_instance):
    """Issue 10: a 100k-deep ``[[[[`` and a partial with ``"ms": "oops"`` written on the runner's own channel
    are the candidate's ``protocol_error``; the Ray workers and the other job carry on."""
    forge = (Path(__file__).parent / "hostile" / "forge_protocol.py").read_text()
    cfg = EvalConfig(budget=20, limits=SessionLimits(call_timeout_s=20.0, episode_timeout_s=90.0))
    ex = ray_executor(episodes, "process", config=cfg)
    jobs = [EvalJob(mode, forge.replace("PARAMS = {}", f"PARAMS = {{'mode': {mode!r}}}", 1), {}, "tiny-0", "train")
            for mode in ("deep", "ms_oops")] + seed_jobs("bm25", ["tiny-1"])
    try:
        out = {jr.job.program_id: jr for jr in ex.map(jobs)}
    finally:
        ex.close()
    for mode in ("deep", "ms_oops"):
        assert out[mode].result.failure is not None and out[mode].result.failure[0] == "protocol_error", mode
    assert out["bm25"].result.failure is None and any(recall(out["bm25"]))


def test_a_job_that_kills_every_worker_is_a_failed_candidate(episodes, ray_instance):
    suicidal = HUNG_HARNESS.replace("time.sleep(3600)", "os._exit(3)").replace("import time\n", "import os\n")
    ex = ray_executor(episodes, "inline", max_retries=0)  # the inline sandbox runs the harness in the worker
    try:
        out = {jr.job.program_id: jr for jr in ex.map([EvalJob("boom", suicidal, {}, "tiny-0", "train"),
                                                       *seed_jobs("recency", ["tiny-1"])])}
    finally:
        ex.close()
    assert out["boom"].result.failure[0] == "worker_lost"
    assert out["recency"].result.failure is None


# --- the generator protocol ------------------------------------------------------------------------------
def test_no_new_task_starts_once_the_caller_stops_iterating(episodes, ray_instance):
    started: list[EvalJob] = []
    ex = ray_executor(episodes, "inline", on_start=started.append)
    jobs = seed_jobs("bm25", list(episodes) * 3)
    try:
        it = ex.map(jobs)
        first = next(it)
        assert first.result.failure is None
        it.close()
        assert len(started) == ex.window < len(jobs)
        assert not ex._pending  # leftovers were cancelled
        time.sleep(1.0)
        assert len(started) == ex.window
        # The executor is still usable after an abandoned map.
        assert [jr.job.episode_id for jr in ex.map(jobs[:1])] == [jobs[0].episode_id]
    finally:
        ex.close()


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_a_worker_whose_task_was_cancelled_never_runs_another(tmp_path, episodes, ray_instance):
    """``ray.cancel`` interrupts a running task with KeyboardInterrupt, which can land inside an import
    and leave that interpreter broken (seen: numpy's lazy submodules recursing without end in every
    later task of that worker). So a worker whose task was interrupted must exit, not be reused."""
    pidfile = tmp_path / "pid"
    sleepy = HUNG_HARNESS.replace("import time\n", "import os\nimport time\n").replace(
        "time.sleep(3600)", f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        # Short sleeps: Ray's interrupt is a simulated SIGINT, seen between bytecodes, not inside one sleep.
        "        for _ in range(72000):\n            time.sleep(0.05)")
    ex = ray_executor(episodes, "inline")
    try:
        it = ex.map([EvalJob("sleepy", sleepy, {}, "tiny-0", "train"), *seed_jobs("recency", ["tiny-1"])])
        assert next(it).job.program_id == "recency"
        deadline = time.monotonic() + 60
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = int(pidfile.read_text())
        it.close()  # cancels the sleeper in the middle of its read
        deadline = time.monotonic() + 90  # a loaded 2-core machine can take tens of seconds to reap it
        while not _dead(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _dead(pid), "the interrupted worker is still alive and would be handed the next task"
        # The executor goes on with fresh workers.
        out = list(ex.map(seed_jobs("bm25", ["tiny-0", "tiny-1", "tiny-2"])))
        assert [jr.result.failure for jr in out] == [None, None, None]
    finally:
        ex.close()


def test_results_match_inline_on_docker(episodes, ray_instance):
    from mstar.sandbox.registry import auto_choice, get_backend

    name, why = auto_choice()
    if name != "docker":
        if os.environ.get("CI") == "true":
            pytest.fail(f"docker sandbox unavailable under CI: {why}")
        pytest.skip(f"docker sandbox unavailable: {why}")
    jobs = seed_jobs("bm25_neighbors", ["tiny-0", "tiny-1", "tiny-2"])
    ex = ray_executor(episodes, "docker", labels={"mstar.run": "test-ray"})
    try:
        ray_out = {jr.job.episode_id: recall(jr) for jr in ex.map(jobs)}
    finally:
        ex.close()
    backend = get_backend("docker")
    try:
        inline = {jr.job.episode_id: recall(jr) for jr in
                  InlineExecutor(episodes, backend, Toolkit(), EvalConfig(budget=20)).map(jobs)}
    finally:
        backend.close()
    assert ray_out == inline and any(any(v) for v in ray_out.values())


def test_import_mstar_does_not_import_ray():
    code = ("import sys, mstar, mstar.evolve.core.engine, mstar.evolve.execution.ray_executor, mstar.cli.main; "
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# --- one embedder per run ------------------------------------------------------------------------------
EMBED_PROBE_HARNESS = '''
INSTRUCTIONS = "x"
KNOBS = {}


class Memory:
    def __init__(self, toolkit, knobs):
        self.toolkit = toolkit

    def write(self, event):
        pass

    def read(self, query):
        # No items: every probe is missed, so the scorer keeps the start of this context.
        dims = len(self.toolkit.embed([query["question"]])[0])
        return {"context": self.toolkit.embedder_name + " " + str(dims), "items": []}
'''


def test_the_runs_embedder_is_rebuilt_by_name_in_the_workers(episodes, ray_instance):
    from mstar.embedders import LocalSentenceEmbedder, local_model_available

    if not local_model_available():
        if os.environ.get("CI") == "true":
            pytest.fail("the embed extra (local model) is not installed under CI")
        pytest.skip("the embed extra (local model) is not installed")
    ex = ray_executor(episodes, "inline", toolkit=Toolkit(embed=LocalSentenceEmbedder(),
                                                          embedder_name=LocalSentenceEmbedder.name))
    try:
        assert ex.spec.embedder == "local"
        (jr,) = list(ex.map([EvalJob("probe", EMBED_PROBE_HARNESS, {}, "tiny-0", "train")]))
    finally:
        ex.close()
    assert jr.result.failure is None
    assert {p.context_excerpt for p in jr.result.probes} == {"all-MiniLM-L6-v2 384"}


def test_an_embedder_a_worker_cannot_rebuild_is_refused_before_ray_starts(episodes):
    from mstar.errors import UsageError

    with pytest.raises(UsageError, match="rebuilds the run's embedder"):
        ray_executor(episodes, "inline", toolkit=Toolkit(embed=lambda texts: [[1.0] for _ in texts]))


def test_the_embedder_is_settled_once_saved_and_kept_on_resume(tmp_path, monkeypatch):
    import mstar.embedders
    from mstar.embedders import HashingEmbedder, default_embedder
    from mstar.errors import UsageError
    from mstar.evolve.core.config import settle_embedder

    want = "hashing" if isinstance(default_embedder(), HashingEmbedder) else "local"
    assert settle_embedder("auto") == want
    monkeypatch.setenv("MSTAR_EMBEDDER", "hashing")  # `auto` honours it, as `mstar eval` does
    assert settle_embedder("auto") == "hashing"
    # A run saved before the field existed was evaluated with the hashing embedder.
    run = tmp_path / "old"
    run.mkdir()
    old = EvolveConfig(run_id="old", task="tiny").model_dump(mode="json")
    del old["embedder"]
    (run / "config.json").write_text(json.dumps(old))
    assert EvolveConfig.load(run).embedder == "hashing"
    # A run evaluated with the local model cannot go on where it is missing (this machine says it is).
    monkeypatch.setattr(mstar.embedders, "local_model_available", lambda: False)
    cfg = EvolveConfig(run_id="old", task="tiny", seeds=["bm25"], operators={"jitter": 1.0}, embedder="local")
    cfg.save(run)
    with pytest.raises(UsageError, match="--embedder: this run was evaluated with the local"):
        Engine(cfg, run, operators={"jitter": JitterOperator()}, suite=TinyTask()).run()
    with pytest.raises(UsageError, match="--embedder local: .* not installed"):
        settle_embedder("local")


# --- a killed driver leaves nothing running ---------------------------------------------------------------
ENTRY = Path(__file__).resolve().parent / "evolve_entry.py"


def _start_killable_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A long `mstar evolve` on a local Ray instance, returned once it is mid-run (evaluations stored,
    both raylet agents up), with the temp dir of its instance."""
    from mstar.evolve.execution import ray_cleanup

    cmd = [sys.executable, str(ENTRY), "evolve", "--task", "tiny", "--budget", "20", "--seeds",
           "bm25,bm25_neighbors,recency", "--operators", "jitter=1", "--children-per-gen", "4", "--islands", "2",
           "--quiet", "--generations", "50", "--run-id", "r1", "--sandbox", "process", "--executor", "ray",
           "--workers", "2", "--embedder", "hashing"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "runs" / "r1" / "run.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for marker in ray_cleanup.ROOT.glob(ray_cleanup.PREFIX + "*/" + ray_cleanup.MARKER):
            try:
                mine = json.loads(marker.read_text())["pid"] == proc.pid
            except (OSError, ValueError):
                continue
            if mine and db.exists():
                titles = {_cmdline(p) for p in ray_cleanup.processes_of(marker.parent)}
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                    stored = c.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
                if stored and {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= titles:
                    return proc, marker.parent
        time.sleep(0.5)
    proc.kill()
    pytest.fail("the evolve run never got going on Ray")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def _gone(temp: Path, within_s: float) -> bool:
    from mstar.evolve.execution import ray_cleanup

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not temp.exists() and not ray_cleanup.processes_of(temp):
            return True
        time.sleep(0.2)
    return False


def test_kill_9_of_the_driver_leaves_no_ray_process_and_no_temp_dir(tmp_path):
    from mstar.evolve.execution import ray_cleanup

    proc, temp = _start_killable_run(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The watchdog reaps at once; left alone, Ray's agents would linger for a minute or more.
    assert _gone(temp, within_s=15), [_cmdline(p) for p in ray_cleanup.processes_of(temp)]


def test_a_new_start_reaps_what_a_killed_run_and_its_watchdog_left(tmp_path, ray_instance):
    from mstar.evolve.execution import ray_cleanup
    from mstar.evolve.execution.ray_executor import start_ray

    proc, temp = _start_killable_run(tmp_path)
    watchdogs = [p for p in ray_cleanup.processes_of(temp) if b"ray_cleanup" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(watchdogs) == 1
    os.kill(watchdogs[0], signal.SIGKILL)  # as if the whole machine's processes were killed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    left = {_cmdline(p) for p in ray_cleanup.processes_of(temp)}
    assert "ray::DashboardAgent" in left or "ray::RuntimeEnvAgent" in left  # what the sweep is for
    assert start_ray(WORKERS) == (False, None)  # this process's instance is reused; the sweep runs first
    assert not temp.exists() and not ray_cleanup.processes_of(temp)
    # The live instance of this process was not touched: it still runs evaluations.
    ex = ray_executor({"tiny-0": TinyTask().all[0]}, "inline")
    try:
        assert [jr.result.failure for jr in ex.map(seed_jobs("bm25", ["tiny-0"]))] == [None]
    finally:
        ex.close()


JSON_STDOUT_SCRIPT = r'''
import json, os, sys, time
from mstar.cli.common import json_stdout
from mstar.evolve.execution.ray_executor import start_ray, stop_ray

out = json_stdout()
started, temp = start_ray(1)
import ray

@ray.remote(num_cpus=0, max_retries=0)
def die():
    os._exit(3)

try:
    ray.get(die.remote())
except Exception:
    pass
time.sleep(3)  # Ray's driver prints the worker's death from a listener thread, a moment later
stop_ray(temp)
print(json.dumps({"ok": True}), file=out)
'''


def test_json_stdout_stays_one_document_when_ray_reports_a_dead_worker(tmp_path):
    """Ray's driver prints "(raylet) A worker died ..." to sys.stdout whatever ``log_to_driver`` says;
    a cancelled task's worker exits on purpose, so `mstar evolve --json` would print that into its JSON.
    Everything but the document goes to stderr."""
    r = subprocess.run([sys.executable, "-c", JSON_STDOUT_SCRIPT], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == {"ok": True}, r.stdout[:500]
    assert "worker died" in r.stderr  # what used to land on stdout is still shown, on stderr
