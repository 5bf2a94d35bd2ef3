"""The host trusts no byte from a sandbox: forged lines on the protocol channel fail the candidate with
``protocol_error`` and the host carries on (issue 10, item 3).

The hostile harness (``tests/hostile/forge_protocol.py``) writes straight to ``toolkit._channel.w``, the
runner's own protocol stream, so the line reaches the host exactly as a genuine reply would.
"""

from __future__ import annotations

import time

import pytest
from test_sandbox_support import LABELS, LIMITS, assert_nothing_left, episode, make_backend, program

from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.harness.loader import load_program
from mstar.sandbox import wire
from mstar.toolkit import Toolkit

BACKENDS = ["process", pytest.param("docker", marks=pytest.mark.docker)]
pytestmark = pytest.mark.timeout(180)
MODES = ["deep", "deep_object", "ms_oops", "ms_oops_result", "nan", "wrong_id", "extra_key", "bad_reason",
         "needs_llm", "string_id_reply", "not_object", "huge_int", "bad_write", "many_partials", "wide"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    b = make_backend(request.param, warm=False)
    yield b
    assert_nothing_left(b)


@pytest.mark.parametrize("mode", MODES)
def test_forged_lines_are_the_candidates_protocol_error(backend, mode):
    cfg = EvalConfig(limits=LIMITS, collect_dump=False)
    # A run with a model: a needs_llm the host never caused is a forgery. (The model is never called: the
    # function below only makes ``has_llm`` true; offline, needs_llm is what any llm call gives anyway.)
    toolkit = Toolkit(llm=lambda messages, **kw: "never called") if mode == "needs_llm" else Toolkit()
    res = evaluate_episode(program("forge_protocol", {"mode": mode}), episode(probes=1), backend, toolkit, None,
                           cfg, LABELS)
    assert res.failure is not None and res.failure[0] == "protocol_error", res.failure


def test_the_host_carries_on_after_forged_lines(backend):
    good = evaluate_episode(load_program("bm25"), episode(), backend, Toolkit(), None,
                            EvalConfig(limits=LIMITS.model_copy(update={"call_timeout_s": 30}), collect_dump=False), LABELS)
    assert good.failure is None and all(p.evidence_recall == 1.0 for p in good.probes), good.failure


# --- wire.py on its own: what is rejected before json.loads, and what passes -------------------------
def test_a_100k_deep_line_is_rejected_before_json_loads_recurses():
    line = b"[" * 100_000 + b"]" * 100_000
    t0 = time.perf_counter()
    with pytest.raises(wire.ProtocolViolation, match="nested deeper"):
        wire.parse(line)
    assert time.perf_counter() - t0 < 2.0  # linear, in C: no recursion, no quadratic scan


def test_brackets_inside_strings_do_not_count_and_escapes_are_handled():
    ctx = '[' * 500 + '\\"{' * 300
    line = ('{"id": 3, "partial": {"value": {"context": "' + ctx + '", "items": []}, "ms": 1.5}}').encode()
    msg = wire.parse(line)
    assert msg["partial"]["value"]["context"] == '[' * 500 + '"{' * 300
    assert wire.nesting_ok(b"[" * 64 + b"]" * 64) and not wire.nesting_ok(b"[" * 65 + b"]" * 65)
    assert not wire.nesting_ok(b"[[]")
    assert not wire.nesting_ok(b"[" + b"[]," * 2_000_000 + b"[]]")
    assert wire.nesting_ok(b'["' + b"[]," * 2_000_000 + b'"]')  # inside a string: one value


@pytest.mark.parametrize("line", [
    b'{"id": 1, "result": {"value": null, "ms": "oops"}, "x": 1}',
    b'{"id": true, "result": 1}',
    b'{"id": 1.0, "result": 1}',
    b'{"id": 1, "partial": {"value": 1, "ms": -1}}',
    b'{"id": 1, "partial": {"value": 1, "ms": true}}',
    b'{"id": 1, "error": {"reason": "timeout", "detail": "forged"}}',
    b'{"id": 1, "error": {"reason": "crash", "detail": 5}}',
    b'{"id": "c1", "method": "shell", "params": {}}',
    b'{"id": "c1", "method": "llm", "params": []}',
    b'{"id": 1, "result": Infinity}',
    b'"just a string"',
    b'\xff\xfe',
])
def test_malformed_messages_are_violations(line):
    with pytest.raises(wire.ProtocolViolation):
        wire.parse(line)


@pytest.mark.parametrize("method, result, n", [
    ("write", [1.0, "x"], 2), ("write", [1.0], 2), ("write", [float("nan")], 1), ("manage", None, 0),
    ("read", {"value": None, "ms": "oops"}, 0), ("read", {"value": None}, 0), ("read_many", {"n": 3}, 2),
    ("dump", [], 0), ("load", [], 0),
])
def test_results_of_the_wrong_shape_are_violations(method, result, n):
    with pytest.raises(wire.ProtocolViolation):
        wire.check_result(method, result, n)


def test_genuine_results_pass():
    assert wire.check_result("write", [0.1, 2], 2) == [0.1, 2]
    assert wire.check_result("read", {"value": {"context": "", "items": []}, "ms": 0.3})["ms"] == 0.3
    assert wire.check_result("dump", {"value": None}) == {"value": None}
    assert wire.check_result("read_many", {"n": 2}, 2) == {"n": 2}


@pytest.mark.parametrize("command", ["check", "eval"])
def test_cli_names_the_protocol_error_and_never_shows_a_traceback(tmp_path, command):
    """`mstar check` / `mstar eval` as a user runs them, on a harness that writes a 100k-deep line."""
    from pathlib import Path

    from test_cli import mstar

    src = (Path(__file__).parent / "hostile" / "forge_protocol.py").read_text()
    harness = tmp_path / "forger.py"
    harness.write_text(src.replace("PARAMS = {}", "PARAMS = {'mode': 'deep'}", 1))
    args = ["check", str(harness)] if command == "check" else ["eval", str(harness), "--task", "synthetic"]
    r = mstar(*args, "--sandbox", "process", check=False, timeout=600)
    out = r.stdout + r.stderr
    assert "protocol_error" in out and "Traceback" not in out and "RecursionError" not in out, out[-2000:]
    if command == "check":
        assert r.returncode == 2 and str(harness) in r.stderr
