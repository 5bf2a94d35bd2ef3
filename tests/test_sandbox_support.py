"""Helpers shared by the sandbox tests (imported by ``test_sandbox_*.py``), and checks of the helpers.

Docker tests are marked ``docker``. Locally they skip, with the reason, when no engine answers; under
``CI=true`` a missing engine fails loudly. A missing image is built once per session (``--local-base``).
"""

from __future__ import annotations

import os
import time
import uuid
from functools import lru_cache
from pathlib import Path

import pytest

from mstar.episodes import Episode, Event, Probe
from mstar.harness.loader import HarnessProgram
from mstar.sandbox.base import SessionLimits

HOSTILE = Path(__file__).resolve().parent / "hostile"
RUN_ID = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
LABELS = {"mstar.run": RUN_ID}
# Small limits keep the hostile tests fast; memory is low so an OOM comes quickly.
LIMITS = SessionLimits(call_timeout_s=4.0, episode_timeout_s=30.0, memory_mb=512, pids=32, cpus=1.0)


def program(name: str, params: dict | None = None, source: str | None = None) -> HarnessProgram:
    """A harness from ``tests/hostile/<name>.py`` (or ``source``), *without* the static check: the sandbox
    itself must stop it. ``params`` replace the file's ``PARAMS = {}`` (values knobs could not carry)."""
    path = HOSTILE / f"{name}.py"
    src = source if source is not None else path.read_text()
    if params:
        src = src.replace("PARAMS = {}", f"PARAMS = {params!r}", 1)
    return HarnessProgram(name=name, path=str(path), source=src, knob_specs={}, needs_llm=False, docstring="",
                          methods=["__init__", "write", "read"])


def episode(n: int = 6, probes: int = 2) -> Episode:
    """A tiny two-session episode whose probes are answerable by lexical recall."""
    facts = ["Ana adopted a grey cat called Miso.", "Ben trains for the Lisbon marathon.",
             "Ana's sister lives in Porto.", "Ben bought a red bicycle.", "Miso knocked over a plant.",
             "Ana started learning the cello."]
    events = [Event(id=f"D{1 + i // 3}:{i % 3 + 1}", session=str(1 + i // 3), speaker="Ana" if i % 2 == 0 else "Ben",
                    text=facts[i % len(facts)]) for i in range(n)]
    qs = [("What is the name of Ana's cat?", "Miso", ["D1:1"]), ("Which marathon is Ben training for?", "Lisbon", ["D1:2"])]
    return Episode(id="tiny", events=events,
                   probes=[Probe(id=f"q{i}", question=q, answer=a, evidence=ev) for i, (q, a, ev) in enumerate(qs[:probes])])


def docker_skip_reason() -> str | None:
    """None when docker tests can run; else why not (under CI=true: fail instead of skipping)."""
    from mstar.sandbox.docker_backend import engine_answers

    if engine_answers():
        return None
    msg = "no Docker engine answers (start dockerd)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg}: docker tests must run under CI=true")
    return msg


@lru_cache(maxsize=1)
def ensure_image() -> str:
    """The current sandbox image, built (local base, no registry) if missing; once per test session."""
    from mstar.sandbox.docker_backend import docker_client
    from mstar.sandbox.image import build_image

    client = docker_client()
    try:
        return build_image(client, local_base=True, log=lambda m: None)
    finally:
        client.close()


def make_backend(name: str, **options):
    """A backend for a test: docker ones skip (or fail under CI) when no engine answers."""
    from mstar.sandbox.registry import get_backend

    if name == "docker":
        reason = docker_skip_reason()
        if reason:
            pytest.skip(reason)
        ensure_image()
    return get_backend(name, **options)


def leftover_containers(run_id: str = RUN_ID) -> list[str]:
    from mstar.sandbox.docker_backend import docker_client

    client = docker_client()
    try:
        return [c["Id"][:12] for c in client.api.containers(all=True, filters={"label": f"mstar.run={run_id}"})]
    finally:
        client.close()


def descendants(pid: int | None = None) -> list[int]:
    """Live processes below ``pid`` (default: this test process), from /proc."""
    pid = pid or os.getpid()
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != b"Z":  # zombies are already dead
                parent[int(entry.name)] = int(fields[1])
    out, frontier = [], {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier}
        out.extend(frontier)
    return sorted(out)


def assert_nothing_left(backend, wait_s: float = 5.0) -> None:
    """After ``backend.close()``: no child process of this test, no container of this test run."""
    if hasattr(backend, "close"):
        backend.close()
    end = time.monotonic() + wait_s
    while descendants() and time.monotonic() < end:
        time.sleep(0.05)
    assert descendants() == [], "sandbox processes left behind"
    if backend.name == "docker":
        assert leftover_containers() == [], "containers left behind"


def test_support_episode_is_scoreable():
    ep = episode()
    assert [p for p, _ in ep.schedule()] == [len(ep.events)]
    assert all(p.evidence for p in ep.probes)


def test_hostile_files_are_harness_shaped():
    for path in sorted(HOSTILE.glob("*.py")):
        src = path.read_text()
        assert "class Memory" in src and "INSTRUCTIONS" in src, path.name
