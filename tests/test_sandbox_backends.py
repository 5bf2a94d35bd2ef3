"""The ``process`` and ``docker`` backends doing their job: same numbers as inline, the container's
configuration, warm spares, cleanup by label, batched reads, load errors, and the channel's byte level."""

from __future__ import annotations

import struct
import time

import pytest
from test_sandbox_support import (
    LABELS,
    LIMITS,
    RUN_ID,
    assert_nothing_left,
    episode,
    leftover_containers,
    make_backend,
    program,
)

from mstar.errors import CandidateFailure, UsageError
from mstar.evaluate import EvalConfig, evaluate, evaluate_episode
from mstar.harness.loader import load_program
from mstar.sandbox.base import read_many
from mstar.sandbox.channel import EOF, FLOOD, Demux, LineBuffer
from mstar.sandbox.registry import get_backend
from mstar.toolkit import Toolkit

BACKENDS = ["process", pytest.param("docker", marks=pytest.mark.docker)]
QUERY = {"id": "q", "question": "What is the name of Ana's cat?", "time": None, "budget": 200}


def _scores(results):
    return [(p.probe_id, p.evidence_recall, p.ndcg, p.context_tokens, p.error) for r in results for p in r.probes]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_same_numbers_as_inline_on_locomo(backend_name, locomo_path):
    from mstar.tasks.registry import get_task

    episodes = get_task("locomo", data=locomo_path).episodes("test")[:2]  # the second reuses the sandbox
    prog = load_program("bm25")
    cfg = EvalConfig(collect_dump=True)
    inline = evaluate(prog, episodes, get_backend("inline"), Toolkit(), None, cfg)
    backend = make_backend(backend_name)
    try:
        boxed = evaluate(prog, episodes, backend, Toolkit(), None, cfg, labels=LABELS)
    finally:
        assert_nothing_left(backend)
    assert [r.failure for r in boxed] == [None, None]
    assert _scores(boxed) == _scores(inline)
    assert [r.dump for r in boxed] == [r.dump for r in inline]


# Fresh globals and an empty /tmp every episode, even in a reused runner; fails on an event saying BOOM.
REUSE_SRC = """
import os, tempfile
INSTRUCTIONS = "Use the turns."
SEEN = []

class Memory:
    def __init__(self, toolkit, knobs):
        SEEN.append(1)
        path = os.path.join(tempfile.gettempdir(), "marker")
        self.had_marker = os.path.exists(path)
        with open(path, "w") as f:
            f.write("x")
        self.events = []

    def write(self, event):
        self.events.append(event)

    def read(self, query):
        if any("BOOM" in e["text"] for e in self.events):
            raise RuntimeError("boom")
        items = [{"text": e["text"], "sources": [e["id"]]} for e in self.events]
        head = f"globals={len(SEEN)} marker={self.had_marker}"
        return {"context": head + "\\n" + "\\n".join(i["text"] for i in items), "items": items}
"""


def _counting(backend):
    """Count the sandboxes the backend starts (containers created / processes spawned)."""
    made = []
    factory = backend.pool.factory

    def counted(*a):
        t = factory(*a)
        made.append(t)
        return t

    backend.pool.factory = counted
    return made


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_episodes_of_one_program_reuse_one_sandbox(backend_name):
    backend = make_backend(backend_name, warm=False)
    made = _counting(backend)
    prog = program("reuse", source=REUSE_SRC)
    tiny = episode()
    boom = tiny.model_copy(update={"events": [tiny.events[0].model_copy(update={"text": "BOOM"}), *tiny.events[1:]]})
    try:
        res = evaluate(prog, [episode()] * 4, backend, Toolkit(), None, EvalConfig(limits=LIMITS), labels=LABELS)
        assert [r.failure for r in res] == [None] * 4
        assert len(made) == 1  # four episodes, one container / process
        first = made[0]
        assert first.alive()
        # A fifth session on the same runner still sees fresh module globals and an empty /tmp.
        s = backend.open(prog, {}, Toolkit(), LIMITS, LABELS)
        assert s.t is first
        s.write([e.as_input() for e in episode().events])
        assert s.read(QUERY)[0]["context"].startswith("globals=1 marker=False\n")
        s.release()

        other = program("reuse2", source=REUSE_SRC + "\n# another program\n")
        s = backend.open(other, {}, Toolkit(), LIMITS, LABELS)
        assert s.t is not first and len(made) == 2  # never across programs
        s.release()
        s = backend.open(prog, {}, Toolkit(), LIMITS.model_copy(update={"memory_mb": 600}), LABELS)
        assert s.t is not first and len(made) == 3  # nor with other limits
        s.close()

        # A failed episode's runner is killed, not reused: the next episode gets a new one.
        res = evaluate(prog, [boom, episode()], backend, Toolkit(), None, EvalConfig(limits=LIMITS), labels=LABELS)
        assert res[0].failure[0] == "crash" and res[1].failure is None
        assert not first.alive()  # the boom episode ran on the reused runner, which is gone now
        assert len(made) == 4 and made[3].alive()
        if backend_name == "docker":
            assert first.cid != made[3].cid
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_idle_runners_are_bounded_and_expire(backend_name, monkeypatch):
    from mstar.sandbox import warm

    monkeypatch.setattr(warm, "REUSE_IDLE_S", 1.0)
    backend = make_backend(backend_name, warm=False)
    made = _counting(backend)
    try:
        for i in range(3):  # three programs: only the last two stay idle
            backend.open(program(f"p{i}", source=REUSE_SRC + f"\n# {i}\n"), {}, Toolkit(), LIMITS, LABELS).release()
        assert [t.alive() for t in made] == [False, True, True]
        time.sleep(2.0)
        assert [t.alive() for t in made] == [False, False, False]  # killed by the idle timeout
        if backend_name == "docker":
            from mstar.sandbox.docker_backend import REAPER

            REAPER.flush()
            assert leftover_containers() == []
    finally:
        assert_nothing_left(backend)


@pytest.mark.docker
def test_container_is_locked_down():
    backend = make_backend("docker", warm=False)
    session = backend.open(program("print_noise"), {}, Toolkit(), LIMITS, LABELS)
    try:
        info = backend.client.api.inspect_container(session.t.cid)
        hc, cfg = info["HostConfig"], info["Config"]
        assert hc["NetworkMode"] == "none" and hc["ReadonlyRootfs"] is True
        assert hc["CapDrop"] == ["ALL"] and hc["SecurityOpt"] == ["no-new-privileges"]
        assert hc["Memory"] == hc["MemorySwap"] == LIMITS.memory_mb * 1024 * 1024
        assert hc["PidsLimit"] == LIMITS.pids and hc["NanoCpus"] == int(LIMITS.cpus * 1e9)
        assert "/tmp" in hc["Tmpfs"] and "size=" in hc["Tmpfs"]["/tmp"]
        assert hc["LogConfig"]["Type"] == "none"
        assert cfg["User"] == "10001:10001" and cfg["Labels"]["mstar.run"] == RUN_ID
        assert cfg["OpenStdin"] and cfg["StdinOnce"] and not cfg["Tty"]
    finally:
        session.close()
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_warm_spare_serves_the_next_episode(backend_name):
    backend = make_backend(backend_name)  # warm by default
    prog = load_program("bm25")
    try:
        waits = []
        for _ in range(3):
            t0 = time.perf_counter()
            session = backend.open(prog, {"top_k": 5, "k1": 1.5, "b": 0.75, "show_time": False, "fill": "skip"},
                                   Toolkit(), LIMITS, LABELS)
            waits.append(time.perf_counter() - t0)
            session.write([e.as_input() for e in episode().events])
            raw, _ = session.read(QUERY)
            assert "Miso" in raw["context"]
            session.close()
            time.sleep(0.8)  # time for the spare to start, as the previous episode's work would give it
        assert min(waits[1:]) < waits[0], waits  # later sessions start on a warm spare
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_one_program_with_no_spares_starts_exactly_one_sandbox(backend_name):
    """``mstar eval HARNESS`` asks for ``spares=0``: the prewarmed sandbox serves the first episode and,
    reused, every later one; nothing else is started to compete with the evaluation for the CPU."""
    backend = make_backend(backend_name, spares=0)
    made = _counting(backend)
    prog = program("reuse", source=REUSE_SRC)
    try:
        backend.prewarm(prog, LIMITS, LABELS)
        res = evaluate(prog, [episode()] * 3, backend, Toolkit(), None, EvalConfig(limits=LIMITS), labels=LABELS)
        assert [r.failure for r in res] == [None] * 3
        time.sleep(0.5)  # a refill would be under way by now
        assert len(made) == 1 and made[0].alive()
    finally:
        assert_nothing_left(backend)


@pytest.mark.docker
def test_cleanup_by_label_removes_leftovers():
    from mstar.sandbox.docker_backend import DockerBackend, cleanup

    backend = make_backend("docker", warm=False)
    stale_run = f"{RUN_ID}-stale"
    old = backend._start(LIMITS, {"mstar.run": stale_run, "mstar.created": "1"}, "", False)
    old._killed = True  # pretend the host died: nothing of this process will remove it
    young = backend._start(LIMITS, {"mstar.run": stale_run}, "", False)
    try:
        assert len(leftover_containers(stale_run)) == 2
        DockerBackend(stale_after_s=3600)  # a new backend removes containers older than an hour ...
        assert leftover_containers(stale_run) == [young.cid[:12]]
        assert cleanup(backend.client, run_id=stale_run) == 1  # ... and a run's own leftovers on demand
        assert leftover_containers(stale_run) == []
    finally:
        young.kill()
        assert_nothing_left(backend)


@pytest.mark.docker
def test_a_crashed_hosts_stopped_containers_are_removed_at_start():
    from mstar.sandbox.docker_backend import _LIVE, DockerBackend

    backend = make_backend("docker", warm=False)
    run = f"{RUN_ID}-crashed"
    dead = backend._start(LIMITS, {"mstar.run": run}, "", False)
    # The host "dies": its end of the attach socket closes, nothing removes the container.
    dead._killed = True
    dead._raw.close()
    dead.sock.close()
    _LIVE.discard(dead.cid)
    alive = backend._start(LIMITS, {"mstar.run": run}, "", False)
    try:
        backend.client.api.wait(dead.cid, timeout=20)  # the runner saw EOF on stdin and exited
        DockerBackend(exited_after_s=3600)  # stopped for less than an hour: kept (another run may inspect it)
        assert len(leftover_containers(run)) == 2
        time.sleep(4)  # not 0: another test session's container may have stopped a moment ago
        DockerBackend(exited_after_s=4)
        assert leftover_containers(run) == [alive.cid[:12]]  # the running one is not touched
    finally:
        alive.kill()
        assert_nothing_left(backend)
        assert leftover_containers(run) == []


@pytest.mark.docker
def test_spares_are_removed_when_the_host_exits_without_close():
    import subprocess
    import sys

    make_backend("docker")  # skip without an engine; the image exists
    run = f"{RUN_ID}-exit"
    code = (
        "import time\nfrom mstar.harness.loader import load_program\nfrom mstar.sandbox.base import SessionLimits\n"
        "from mstar.sandbox.registry import get_backend\n"
        f"b = get_backend('docker')\nb.prewarm(load_program('bm25'), SessionLimits(), {{'mstar.run': {run!r}}})\n"
        "while len(b.pool._ready) < b.pool.depth:\n    time.sleep(0.05)\nprint(len(b.pool._ready))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2"]  # two spares were up when the host exited
    assert leftover_containers(run) == []


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_read_many_delivers_the_reads_before_a_hang(backend_name):
    """Batched replies are flushed by the runner while a read hangs: the host keeps every earlier result."""
    src = (
        "import time\nINSTRUCTIONS = 'x'\nKNOBS = {}\nclass Memory:\n"
        "    def __init__(self, toolkit, knobs):\n        self.n = 0\n"
        "    def write(self, event):\n        pass\n"
        "    def read(self, query):\n        self.n += 1\n"
        "        if self.n == 3:\n            time.sleep(3600)\n"
        "        return {'context': str(self.n), 'items': []}\n"
    )
    backend = make_backend(backend_name, warm=False)
    session = backend.open(program("hangs", source=src), {}, Toolkit(), LIMITS.model_copy(update={"call_timeout_s": 1.5}),
                           LABELS)
    try:
        with pytest.raises(CandidateFailure) as err:
            read_many(session, [QUERY] * 4)
        assert err.value.reason == "timeout" and "read_many" in err.value.detail
        assert [r[0]["context"] for r in err.value.partial] == ["1", "2"]
    finally:
        session.close()
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_read_many_keeps_results_before_a_failure(backend_name):
    src = (
        "INSTRUCTIONS = 'x'\nKNOBS = {}\nclass Memory:\n"
        "    def __init__(self, toolkit, knobs):\n        self.n = 0\n"
        "    def write(self, event):\n        pass\n"
        "    def read(self, query):\n        self.n += 1\n"
        "        if self.n == 3:\n            raise ValueError('third read breaks')\n"
        "        return {'context': str(self.n), 'items': []}\n"
    )
    backend = make_backend(backend_name, warm=False)
    session = backend.open(program("breaks", source=src), {}, Toolkit(), LIMITS, LABELS)
    try:
        assert [r[0]["context"] for r in read_many(session, [QUERY, QUERY])] == ["1", "2"]
        with pytest.raises(CandidateFailure) as err:
            read_many(session, [QUERY, QUERY, QUERY])
        assert err.value.reason == "crash" and "third read breaks" in err.value.detail
        assert [r[0]["context"] for r in err.value.partial] == []  # the third read is the first of this batch
    finally:
        session.close()
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize(("source", "fragment"), [
    ("INSTRUCTIONS = 'x'\nKNOBS = {}\nraise RuntimeError('boom at import')\n", "boom at import"),
    ("INSTRUCTIONS = 'x'\nKNOBS = {}\ndef broken(:\n", "syntax error"),
    ("INSTRUCTIONS = 3\nKNOBS = {}\nclass Memory:\n    pass\n", "INSTRUCTIONS"),
])
def test_load_errors(backend_name, source, fragment):
    backend = make_backend(backend_name, warm=False)
    try:
        res = evaluate_episode(program("bad", source=source), episode(), backend, Toolkit(), None,
                               EvalConfig(limits=LIMITS), LABELS)
        assert res.failure[0] == "load_error" and fragment in res.failure[1]
    finally:
        assert_nothing_left(backend)


def test_registry():
    with pytest.raises(UsageError, match="unknown backend"):
        get_backend("vm")
    assert get_backend("process", warn=False).name == "process"
    assert get_backend("inline").name == "inline"


def test_line_buffer_floods_and_ends():
    lb = LineBuffer(max_bytes=10)
    lb.feed(b'{"a":1}\n{"b"')
    lb.feed(b":2}\n")
    assert list(lb.lines) == [b'{"a":1}', b'{"b":2}']
    lb.feed(b"x" * 11)
    assert lb.lines[-1] is FLOOD and lb.dead
    lb2 = LineBuffer(max_bytes=10)
    lb2.close()
    assert lb2.lines[-1] is EOF


def test_demux_splits_docker_frames():
    out, err = [], []
    d = Demux(out.append, err.append)
    frames = struct.pack(">BxxxL", 1, 3) + b"abc" + struct.pack(">BxxxL", 2, 2) + b"e!"
    d.feed(frames[:5])
    d.feed(frames[5:])
    assert out == [b"abc"] and err == [b"e!"]
