"""The protocol every sandbox backend implements.

A backend opens a *session*: one live instance of a harness's ``Memory`` (inside a container, a
subprocess, or this process). The evaluator drives the session; it never touches the harness directly,
so every backend is interchangeable and gold data never crosses into the session.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from mstar.harness.loader import HarnessProgram
from mstar.toolkit import Toolkit

# How every sandbox starts the runner's Python (the image's ENTRYPOINT says the same, sandbox/Dockerfile):
# `-I` without its `-E`: no user site (-s), no script directory on sys.path (-P), no .pyc written (-B), in
# an environment the backend builds from nothing -- holding one fixed hash seed, so a harness that
# iterates a set of strings behaves the same in every sandbox, run and process (a run's lineage depends
# on it; the inline backend runs in the host's process and keeps the host's seed).
PYTHON_FLAGS = ("-P", "-s", "-B")
HASH_SEED = "0"


class SessionLimits(BaseModel):
    """Resource limits of one session. Backends enforce what they can and document what they cannot."""

    call_timeout_s: float = 120.0
    episode_timeout_s: float = 1800.0
    memory_mb: int = 2048
    pids: int = 64
    cpus: float = 1.0
    # Bytes of one reply line from the harness side; past it the candidate is failed as "output_flood".
    max_reply_bytes: int = 16 * 1024 * 1024


@runtime_checkable
class HarnessSession(Protocol):
    def write(self, events: list[dict[str, Any]]) -> list[float]:
        """Write events in order; returns the milliseconds each ``Memory.write`` call took."""

    def manage(self, phase: str) -> float:
        """Call ``Memory.manage(phase)`` if the harness has it; returns milliseconds (0 when absent)."""

    def read(self, query: dict[str, Any]) -> tuple[Any, float]:
        """Call ``Memory.read(query)``; returns the raw result (checked by the caller) and milliseconds."""

    def dump(self) -> list[dict[str, Any]] | None:
        """``Memory.dump()`` when the harness has it, else None."""

    def close(self) -> None:
        """Release everything the session holds (container, process). Safe to call twice."""


class SandboxBackend(Protocol):
    name: str

    def open(
        self,
        program: HarnessProgram,
        knobs: dict[str, Any],
        toolkit: Toolkit,
        limits: SessionLimits,
        labels: dict[str, str] | None = None,
    ) -> HarnessSession:
        """Start a session; raises ``CandidateFailure`` when the program cannot even be loaded."""


def read_many(session: HarnessSession, queries: list[dict[str, Any]]) -> list[tuple[Any, float]]:
    """``session.read`` for each query, in order: one round trip where the session supports it.

    Sandboxed sessions answer a batch with one request (a round trip costs ~0.2-0.5 ms, more than many
    reads). On a ``CandidateFailure`` after some reads, the error carries them in ``.partial``.
    """
    batch = getattr(session, "read_many", None)
    if batch is not None:
        return batch(queries)
    from mstar.errors import CandidateFailure

    out: list[tuple[Any, float]] = []
    for q in queries:
        try:
            out.append(session.read(q))
        except CandidateFailure as e:
            e.partial = out  # type: ignore[attr-defined]
            raise
    return out
