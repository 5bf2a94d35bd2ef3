"""One validation path, always sandboxed (issue 10, item 1): every operator's children and ``mstar check``
are smoke-run through ``mstar.harness.validate`` in the run's sandbox, never in the host's process unless
the user asked for ``inline``.

Evidence of *where* a child ran comes from the child itself: ``tests/hostile/where_am_i.py`` fails its
smoke read with its uid, whether the host's (fake) OPENAI_API_KEY is in its environment and whether the
checkout is visible; that message is what the validator (and an LLM fix prompt) gets back.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_sandbox_support import assert_nothing_left, make_backend

from mstar.evolve.operators.base import OperatorContext, OperatorFailed, ParentView
from mstar.harness.loader import load_program
from mstar.harness.validate import ValidationError, validate_source

REPO = Path(__file__).resolve().parents[1]
WHERE = (REPO / "tests" / "hostile" / "where_am_i.py").read_text().replace(
    "PARAMS = {}", f"PARAMS = {{'repo': {str(REPO / 'pyproject.toml')!r}}}", 1)
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def fake_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", f"sk-fake-{uuid.uuid4().hex}")


class Counting:
    """A real backend that counts the sessions opened through it (what ran where)."""

    def __init__(self, inner):
        self.inner, self.opened = inner, 0
        self.name = inner.name

    def open(self, *args, **kw):
        self.opened += 1
        return self.inner.open(*args, **kw)

    def close(self):
        self.inner.close()


def test_without_a_backend_the_validator_uses_the_process_sandbox_never_the_host(fake_key):
    with pytest.raises(ValidationError) as e:
        validate_source(WHERE, None)
    assert e.value.reason == "smoke"
    assert "uid=65534 key=False repo=False" in e.value.detail, e.value.detail


def test_inline_runs_on_the_host_only_when_asked(fake_key):
    from mstar.sandbox.inline import InlineBackend

    with pytest.raises(ValidationError) as e:
        validate_source(WHERE, InlineBackend())
    assert f"uid={os.getuid()} key=True repo=True" in e.value.detail  # what --sandbox inline means


def test_structural_children_are_smoked_in_the_runs_sandbox():
    from mstar.evolve.operators.structural import StructuralOperator

    seeds = {n: load_program(n).source for n in ("bm25", "bm25_neighbors", "recency")}
    sandbox = Counting(make_backend("process", warn=False, warm=False))
    try:
        ctx = OperatorContext(rng=random.Random(3), seeds=seeds, sandbox=sandbox)
        child = StructuralOperator().propose([ParentView(id="p", name="bm25", source=seeds["bm25"])], ctx)
    finally:
        sandbox.close()
        assert_nothing_left(sandbox.inner)
    assert child.source != seeds["bm25"] and sandbox.opened >= 1


@pytest.mark.docker
def test_llm_children_are_smoked_in_docker_under_sandbox_docker(fake_key):
    """Recorded replies (plain strings, no model): the first child is where_am_i, whose smoke failure goes
    back in the fix prompt, and shows the container's uid 10001 and no key; the second is the parent."""
    from mstar.evolve.operators.llm_reflect import LLMReflect

    bm25 = load_program("bm25").source
    sent: list[list[dict]] = []
    replies = ["RATIONALE: r\n```python\n" + WHERE + "```\n",
               "RATIONALE: r\n```python\n" + bm25.replace('"default": 60}', '"default": 61}', 1) + "```\n"]

    def llm(messages, **kw):
        sent.append([dict(m) for m in messages])
        return replies.pop(0)

    sandbox = Counting(make_backend("docker", warm=False))
    try:
        ctx = OperatorContext(rng=random.Random(0), seeds={}, llm=llm, sandbox=sandbox)
        prop = LLMReflect().propose([ParentView(id="p", name="bm25", source=bm25, score=0.5)], ctx)
    finally:
        sandbox.close()
    assert prop.llm_calls == 2 and sandbox.opened == 2
    fix_prompt = sent[1][-1]["content"]
    assert "uid=10001 key=False repo=False" in fix_prompt, fix_prompt[-1500:]


def test_tune_validates_its_child_in_the_runs_sandbox():
    from mstar.evolve.operators.tune import TuneOperator

    src = load_program("bm25").source
    sandbox = Counting(make_backend("process", warn=False, warm=False))
    scores = iter([0.1, 0.5, 0.2, 0.3])
    try:
        ctx = OperatorContext(rng=random.Random(0), seeds={}, score_minibatch=lambda s, k: next(scores),
                              options={"trials": 4}, sandbox=sandbox)
        try:
            TuneOperator().propose([ParentView(id="p", name="bm25", source=src)], ctx)
        except OperatorFailed as e:
            assert e.reason == "no_gain"  # then no child to validate
            return
    finally:
        sandbox.close()
    assert sandbox.opened == 1


def test_the_engine_smokes_children_in_the_backend_it_evaluates_with():
    from mstar.evolve.core.engine import Engine
    from mstar.sandbox.inline import InlineBackend
    from mstar.sandbox.process import ProcessBackend

    b = Engine._child_sandbox(SimpleNamespace(config=SimpleNamespace(sandbox="process")))
    try:
        assert isinstance(b, ProcessBackend)
    finally:
        b.close()
    assert isinstance(Engine._child_sandbox(SimpleNamespace(config=SimpleNamespace(sandbox="inline"))),
                      InlineBackend)


def test_sandbox_auto_refuses_without_docker_or_bubblewrap(tmp_path):
    """No bwrap on PATH and no engine at DOCKER_HOST: one line, exit 2, naming the fix."""
    exe = Path(sys.executable).parent / "mstar"
    env = {"PATH": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "HOME": str(tmp_path)}
    r = subprocess.run([str(exe), "check", "bm25", "--sandbox", "auto"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--sandbox auto" in lines[0] and "bubblewrap" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_doctor_lists_each_protection_of_the_process_sandbox():
    from typer.testing import CliRunner

    from mstar.cli.main import app

    out = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "300"}).output
    for name in ("files", "sockets", "processes", "uid", "environment", "pids", "memory", "cpu", "rlimits"):
        row = next((ln for ln in out.splitlines() if ln.startswith(f"│   {name} ")), None)
        assert row is not None and "│ ok " in row, f"{name}: {row}\n{out}"
    assert "bwrap" in out
