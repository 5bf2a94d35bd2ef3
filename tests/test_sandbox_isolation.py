"""Escapes from the sandbox (issue 10's red-team table), run on both isolating backends.

The runner's guard is OFF here: the operating-system layer (bubblewrap's namespaces for ``process``,
the container for ``docker``) is what must stop each attack. Each attack either fails with the error
the sandbox gives it (named in the candidate's failure) or succeeds only in seeing nothing of the host;
a hostile harness that gets through returns ``ESCAPED`` in its context, which fails the test.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import uuid
from pathlib import Path

import pytest
from test_sandbox_support import LABELS, LIMITS, assert_nothing_left, episode, make_backend, program

from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.harness.loader import load_program
from mstar.toolkit import Toolkit

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ["process", pytest.param("docker", marks=pytest.mark.docker)]
pytestmark = pytest.mark.timeout(180)
# What a contained attack may see: the file or socket is not there, not permitted, or nobody listens.
CONTAINED = {errno.ENOENT: "No such file or directory", errno.EACCES: "Permission denied",
             errno.ECONNREFUSED: "Connection refused", errno.ENETUNREACH: "Network is unreachable",
             errno.ESRCH: "No such process", errno.EPERM: "Operation not permitted"}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    b = make_backend(request.param, guard=False, warm=False)
    yield b
    assert_nothing_left(b)


def attack(backend, name: str, params: dict, **limits):
    cfg = EvalConfig(limits=LIMITS.model_copy(update=limits), collect_dump=False)
    return evaluate_episode(program(name, params), episode(probes=1), backend, Toolkit(), None, cfg, LABELS)


def assert_contained(res, *errnos: int) -> str:
    """The attack failed the candidate, with one of the expected errors named in the detail."""
    assert res.failure is not None, f"the attack was not stopped: {[p.context[:200] for p in res.probes]}"
    reason, detail = res.failure
    assert "ESCAPED" not in detail
    texts = [CONTAINED[e] for e in errnos]
    assert reason in ("crash", "forbidden") and any(t in detail for t in texts), (reason, detail[-600:])
    return reason


def assert_good_harness_still_scores(backend):
    good = evaluate_episode(load_program("bm25"), episode(), backend, Toolkit(), None,
                            EvalConfig(limits=LIMITS.model_copy(update={"call_timeout_s": 30}), collect_dump=False), LABELS)
    assert good.failure is None, good.failure
    assert all(p.evidence_recall == 1.0 for p in good.probes)


# --- sockets: the Docker engine's, abstract ones, socket files in /tmp, TCP on loopback ------------------
def test_docker_engine_socket_is_unreachable(backend):
    res = attack(backend, "docker_socket", {"path": "/var/run/docker.sock"})
    assert_contained(res, errno.ENOENT, errno.EACCES)


class Listener:
    """A host-side server (unix path, abstract unix, or TCP) recording whether anything connected."""

    def __init__(self, family: int, address):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(4)
        self.sock.settimeout(0.3)
        self.got: list[bytes] = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.got.append(conn.recv(100))
            conn.close()

    def close(self) -> list[bytes]:
        self._stop = True
        self.thread.join(2)
        self.sock.close()
        return self.got


def test_abstract_unix_socket_is_unreachable(backend):
    name = f"mstar-test-{uuid.uuid4().hex[:8]}"
    host = Listener(socket.AF_UNIX, "\0" + name)
    res = attack(backend, "unix_socket", {"abstract": name})
    assert host.close() == [], "the sandbox reached an abstract socket of the host"
    assert_contained(res, errno.ECONNREFUSED, errno.ENOENT)


def test_socket_files_in_tmp_are_unreachable(backend):
    """Ray's sockets live under /tmp/ray/session_*/sockets, X11's in /tmp/.X11-unix: /tmp is the sandbox's own."""
    path = f"/tmp/mstar-test-{uuid.uuid4().hex[:8]}.sock"
    host = Listener(socket.AF_UNIX, path)
    os.chmod(path, 0o777)
    try:
        res = attack(backend, "unix_socket", {"path": path})
    finally:
        got = host.close()
        os.unlink(path)
    assert got == [], "the sandbox reached a unix socket in the host's /tmp"
    assert_contained(res, errno.ENOENT)


def test_tcp_to_host_loopback_is_unreachable(backend):
    host = Listener(socket.AF_INET, ("127.0.0.1", 0))
    res = attack(backend, "tcp_raw", {"port": host.sock.getsockname()[1]})
    assert host.close() == [], "the sandbox reached the host's loopback"
    assert_contained(res, errno.ECONNREFUSED, errno.ENETUNREACH)


# --- host files: shadow, root's home, the checkout, the data ------------------------------------------
@pytest.fixture(scope="module")
def planted():
    """A secret in root's home and a gold file next to the checkout, when this user may write them."""
    paths = []
    for where in (Path.home(), REPO.parent):
        p = where / f".mstar-test-secret-{uuid.uuid4().hex[:8]}"
        try:
            p.write_text("GOLD-ANSWER-42")
            p.chmod(0o644)
            paths.append(p)
        except OSError:
            pass
    yield paths
    for p in paths:
        p.unlink(missing_ok=True)


@pytest.mark.parametrize("what", ["shadow", "home", "checkout", "data", "beside_checkout"])
def test_host_files_are_invisible(backend, planted, what):
    data = os.environ.get("MSTAR_DATA") or str(REPO.parent / "shared" / "data" / "locomo10.json")
    path = {"shadow": "/etc/shadow", "home": str(planted[0]) if planted else "/root/.bashrc",
            "checkout": str(REPO / "pyproject.toml"), "data": data,
            "beside_checkout": str(planted[-1]) if planted else str(REPO / "README.md")}[what]
    res = attack(backend, "read_host_file", {"path": path})
    assert_contained(res, errno.ENOENT, errno.EACCES)


def test_import_mstar_and_load_the_data_fails(backend):
    data = str(REPO.parent / "shared" / "data" / "locomo10.json")
    res = attack(backend, "import_mstar", {"data": data})
    assert res.failure is not None and res.failure[0] == "crash", res.failure
    assert "No module named 'mstar'" in res.failure[1]


# --- processes: /proc of the host, signals, ptrace --------------------------------------------------
def test_no_host_environment_in_any_proc_environ(backend, monkeypatch):
    secret = f"sk-fake-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    session = backend.open(program("proc_snoop", {"mode": "environ"}), {}, Toolkit(), LIMITS, LABELS)
    try:
        raw, _ = session.read({"id": "q", "question": "keys?", "time": None, "budget": 100})
    finally:
        session.close()
    assert secret not in raw["context"] and "OPENAI_API_KEY" not in raw["context"]
    # Its own pid namespace: a handful of processes, not the host's (this test's pid is not among them).
    assert len(raw["pids"]) < 10 and len(os.listdir("/proc")) > len(raw["pids"]), raw["pids"]


@pytest.mark.parametrize("mode", ["kill", "ptrace"])
def test_host_processes_cannot_be_signalled_or_traced(backend, mode):
    res = attack(backend, "proc_snoop", {"mode": mode, "host_pid": os.getpid()})
    assert_contained(res, errno.ESRCH, errno.EPERM)


# --- a CPU quota for the whole process tree ----------------------------------------------------------
def test_cpu_quota_bounds_the_whole_process_tree(backend):
    """Three children spin for 2 s wall; at half a core the tree may use about 1 CPU-second, not 3-4."""
    session = backend.open(program("cpu_tree", {"children": 3, "seconds": 2.0}), {}, Toolkit(),
                           LIMITS.model_copy(update={"cpus": 0.5, "call_timeout_s": 20}), LABELS)
    try:
        raw, _ = session.read({"id": "q", "question": "cpu?", "time": None, "budget": 100})
    finally:
        session.close()
    used = float(raw["context"])
    assert used <= 1.0 * 1.5 + 0.3, f"the tree used {used:.2f} CPU-s in 2 s at a 0.5-core quota"


def test_the_host_carries_on_after_every_attack(backend):
    assert_good_harness_still_scores(backend)


def test_check_shows_the_harness_frames_not_the_runners(tmp_path):
    """Issue 13: a crashing harness is reported with its own file:line and exception, via `mstar check`."""
    from test_cli import mstar

    src = (REPO / "tests" / "hostile" / "runtime_err.py")
    r = mstar("check", str(src), "--sandbox", "process", check=False)
    assert r.returncode == 2, r.stderr
    err = r.stderr
    assert f'File "{src}", line 17, in read' in err and "share = len(hits) / 0" in err, err
    assert "ZeroDivisionError: division by zero" in err
    assert "runner.py" not in err and "<lambda>" not in err, err


def _runner_processes() -> set[int]:
    out = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if b"runner.py" in f.read():
                        out.add(int(entry.name))
            except OSError:
                pass
    return out


def test_a_child_in_its_own_session_dies_with_the_sandbox():
    """A forked child that calls setsid() escapes a killpg; closing the session must still end it."""
    import time

    b = make_backend("process", guard=False, warm=False)
    before = _runner_processes()
    session = b.open(program("escape_group"), {}, Toolkit(), LIMITS, LABELS)
    try:
        raw, _ = session.read({"id": "q", "question": "x", "time": None, "budget": 100})
        assert raw["context"] == "left a child behind"
        assert len(_runner_processes() - before) >= 2  # the runner and its spinning child
    finally:
        session.close()
        b.close()
    deadline = time.monotonic() + 5
    while _runner_processes() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (_runner_processes() - before), "a sandbox process outlived its session"
