"""Hostile harnesses against the ``process`` and ``docker`` sandboxes (issue 4).

Each hostile program (``tests/hostile/``) is loaded *without* the static check. Most cases run twice:
with the runner's guard off, so the operating-system layer (container / namespaces / rlimits / cgroup)
is what stops them, and with the guard on (the default), which names the attempt (``forbidden``). Each
test checks: the candidate fails with a specific reason, a good harness then evaluates normally on the
same backend (the host and the evaluation carry on), and no container or process is left behind.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

import pytest
from test_sandbox_support import LABELS, LIMITS, assert_nothing_left, episode, make_backend, program

from mstar.errors import HarnessError
from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.harness.loader import load_program
from mstar.harness.static import check_source
from mstar.toolkit import Toolkit

BACKENDS = ["process", pytest.param("docker", marks=pytest.mark.docker)]
pytestmark = pytest.mark.timeout(120)


def run(backend, name: str, params: dict | None = None, **limits):
    """Evaluate hostile harness ``name`` on a tiny episode; then check a good harness still scores."""
    cfg = EvalConfig(limits=LIMITS.model_copy(update=limits), collect_dump=False)
    res = evaluate_episode(program(name, params), episode(), backend, Toolkit(), None, cfg, LABELS)
    # The test's usual limits, not the hostile case's tight ones: a loaded machine may take over 1s to import.
    good = evaluate_episode(load_program("bm25"), episode(), backend, Toolkit(), None,
                            EvalConfig(limits=LIMITS, collect_dump=False), LABELS)
    assert good.failure is None, good.failure
    assert all(p.evidence_recall == 1.0 for p in good.probes), "the evaluation after a hostile one is wrong"
    return res


def reason(res) -> str:
    assert res.failure is not None, "the hostile harness was not failed"
    return res.failure[0]


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    return request.param


@pytest.fixture(params=[False, True], ids=["os-layer", "guard"])
def guard(request) -> bool:
    return request.param


@pytest.fixture
def backend(backend_name, guard):
    b = make_backend(backend_name, guard=guard, warm=False)
    yield b
    assert_nothing_left(b)


def test_socket_reaches_nothing(backend):
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    got = []
    t = threading.Thread(target=lambda: got.append(_accept(listener)))
    t.start()
    res = run(backend, "net_socket", {"host": "127.0.0.1", "port": listener.getsockname()[1]})
    t.join()
    listener.close()
    assert got == [None], "the sandbox reached the host's listener"
    assert reason(res) == "forbidden"
    assert "network" in res.failure[1] or "unreachable" in res.failure[1] or "refused" in res.failure[1]


def _accept(listener: socket.socket):
    try:
        conn, _ = listener.accept()
        conn.close()
        return "connected"
    except OSError:
        return None


def test_environment_has_no_keys(backend, monkeypatch):
    secret = f"sk-fake-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    cfg = EvalConfig(limits=LIMITS, collect_dump=False)
    session = backend.open(program("env_keys", {"host_pid": os.getpid()}), {}, Toolkit(), cfg.limits, LABELS)
    try:
        raw, _ = session.read({"id": "q", "question": "keys?", "time": None, "budget": 100})
    finally:
        session.close()
    assert secret not in raw["context"]
    assert "OPENAI_API_KEY" not in raw["env_names"]
    # LC_CTYPE: Python's own C-locale coercion (PEP 538) in a container started with no environment at all.
    # PYTHONHASHSEED: the one variable the backends set themselves (tests/test_sandbox_hash_seed.py).
    allowed = {"LC_CTYPE"} if backend.name == "docker" else {"PATH", "LANG", "HOME", "TMPDIR", "PWD"}
    assert set(raw["env_names"]) <= allowed | {"PYTHONHASHSEED"}, raw["env_names"]
    assert "PYTHONHASHSEED=0" in raw["context"].splitlines()


def test_writes_outside_tmp_fail(backend, tmp_path):
    outside = tmp_path / "pwned.txt"
    tmp_path.chmod(0o777)  # even a writable host dir must stay untouched
    etc = f"/etc/mstar-pwned-{uuid.uuid4().hex[:8]}"
    res = run(backend, "write_outside", {"paths": [etc, str(outside)]})
    assert reason(res) == "forbidden", res.failure
    assert not outside.exists() and not os.path.exists(etc)


def test_fork_bomb_is_contained(backend):
    res = run(backend, "fork_bomb", pids=24)
    expected = "forbidden" if backend.guard else "resource_limit"
    assert reason(res) == expected, res.failure


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_allocating_4gb_is_oom(backend_name):
    backend = make_backend(backend_name, warm=False)
    try:
        res = run(backend, "alloc_4gb", memory_mb=384)
        assert reason(res) == "oom", res.failure
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_infinite_loop_in_read_times_out(backend_name):
    backend = make_backend(backend_name, warm=False)
    try:
        res = run(backend, "loop_read", call_timeout_s=1.5)
        assert reason(res) == "timeout"
        assert "read" in res.failure[1]
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_sleep_past_the_deadlines(backend_name):
    backend = make_backend(backend_name, warm=False)
    try:
        res = run(backend, "sleep_deadline", {"sleep": 3600}, call_timeout_s=1.0)
        assert reason(res) == "timeout" and "call deadline" in res.failure[1]
        # Every write is quick, but together they pass the episode's deadline.
        res = run(backend, "sleep_deadline", {"sleep": 0, "write_sleep": 0.4}, call_timeout_s=30, episode_timeout_s=1.5)
        assert reason(res) == "timeout" and "episode deadline" in res.failure[1]
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize(("mode", "expected"), [("lines", "protocol_error"), ("huge", "output_flood")])
def test_junk_on_stdout(backend_name, mode, expected):
    backend = make_backend(backend_name, warm=False)
    try:
        res = run(backend, "flood_stdout", {"mode": mode}, max_reply_bytes=1 << 20)
        assert reason(res) == expected, res.failure
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_print_does_not_corrupt_the_channel(backend_name):
    backend = make_backend(backend_name)
    try:
        res = run(backend, "print_noise")
        assert res.failure is None
        assert [p.error for p in res.probes] == [None, None]
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("how", ["os", "ctypes"])
def test_shell_and_native_calls_are_forbidden(backend_name, how):
    backend = make_backend(backend_name, warm=False)
    try:
        res = run(backend, "ctypes_system", {"how": how})
        assert reason(res) == "forbidden", res.failure
        assert ("os.system" if how == "os" else "ctypes") in res.failure[1]
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("what", ["object", "function"])
def test_non_json_values_are_bad_output(backend_name, what):
    backend = make_backend(backend_name, warm=False)
    try:
        res = run(backend, "non_json", {"what": what})
        assert reason(res) == "bad_output"
        assert "JSON" in res.failure[1]
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_ten_megabyte_context(backend_name):
    backend = make_backend(backend_name, warm=False)
    try:
        # Within the channel's limit the reply arrives; the host's contract check fails the candidate.
        res = run(backend, "big_context")
        assert reason(res) == "context_too_long"
        assert all(p.error and p.error.startswith("context_too_long") for p in res.probes)
        assert all(p.evidence_recall == 0.0 for p in res.probes if p.evidence_recall is not None)
        # Over the channel's limit the sandbox is killed before the reply is even read.
        res = run(backend, "big_context", max_reply_bytes=1 << 20)
        assert reason(res) == "output_flood"
    finally:
        assert_nothing_left(backend)


@pytest.mark.parametrize("name", ["net_socket", "env_keys", "fork_bomb", "ctypes_system"])
def test_static_check_rejects_the_obvious_ones(name):
    with pytest.raises(HarnessError):
        check_source(program(name).source, name)


@pytest.mark.parametrize("name", ["write_outside", "alloc_4gb", "loop_read", "flood_stdout", "sleep_deadline",
                                  "non_json", "big_context"])
def test_static_check_cannot_see_the_rest(name):
    check_source(program(name).source, name)  # passes: only the sandbox stops these
