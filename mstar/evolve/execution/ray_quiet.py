"""What Ray may print to the person running mstar: nothing, unless it means something for the run.

``log_to_driver=False`` keeps the workers' own output away, but Ray's driver also has a listener thread
that prints every error the cluster publishes for this job to ``sys.stdout``, prefixed ``(raylet)``.
The usual one is "A worker died or was killed ... OOM killer ..." for a worker that mstar *itself*
ended after ``ray.cancel`` interrupted its task (see ``ray_executor._retire_worker``): alarming and
wrong. ``install`` puts a filter in front of that printer:

- a worker death of a worker mstar retired on purpose is dropped (the retiring worker leaves its pid
  in the Ray session directory just before it exits, which the driver reads on the same machine);
- any other worker death becomes one line on stderr, in mstar's terms: the task is retried and a job
  that keeps killing its worker is recorded as a failed candidate (``worker_lost``);
- any other message is kept, on stderr, with one line saying where it comes from.

Ray's printer is a private function (``ray._private.worker.print_to_stdstream``); when a Ray version
no longer has it, ``install`` does nothing and Ray prints as it always did.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

_DEATH = re.compile(r"A worker died or was killed while executing", re.I)
_PID = re.compile(r"Worker PID: (\d+)")
_SUBDIR = "mstar-retired"  # inside Ray's session directory


def _session_dir() -> Path | None:
    try:
        import ray._private.worker as rw

        node = rw.global_worker.node
        return Path(node.get_session_dir_path()) if node is not None else None
    except Exception:  # noqa: BLE001 - not connected, or a Ray without these internals
        return None


def mark_retired() -> None:
    """Called by a worker that is about to exit on purpose: its death is not news."""
    d = _session_dir()
    if d is None:
        return
    try:
        (d / _SUBDIR).mkdir(exist_ok=True)
        (d / _SUBDIR / str(os.getpid())).touch()
    except OSError:
        pass  # the worst case is one line on stderr about a worker death


def was_retired(pid: int, session_dir: Path | None = None) -> bool:
    d = session_dir if session_dir is not None else _session_dir()
    return d is not None and (d / _SUBDIR / str(pid)).exists()


def translate(line: str, session_dir: Path | None = None) -> str | None:
    """One line Ray's driver would print -> what mstar prints instead (None: nothing)."""
    if _DEATH.search(line):
        m = _PID.search(line)
        if m and was_retired(int(m.group(1)), session_dir):
            return None
        pid = f" (pid {m.group(1)})" if m else ""
        return (f"mstar: a Ray worker died{pid} during an evaluation; Ray retries the task, and a job that "
                "keeps killing its worker is recorded as a failed candidate (worker_lost)")
    line = line.strip()
    return f"mstar: Ray reports: {line}" if line else None


def _filtered(original: Any) -> Any:
    def print_to_stdstream(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":  # workers' own logs (only with log_to_driver): Ray's way
            return original(data, ignore_prefix)
        session = _session_dir()
        for line in data.get("lines", []):
            out = translate(str(line), session)
            if out:
                print(out, file=sys.stderr, flush=True)

    print_to_stdstream.mstar_filter = True  # type: ignore[attr-defined]
    return print_to_stdstream


def install() -> None:
    """Put the filter in front of Ray's driver-side printer (idempotent)."""
    try:
        import ray._private.worker as rw
    except ImportError:
        return
    current = getattr(rw, "print_to_stdstream", None)
    if current is None or getattr(current, "mstar_filter", False):
        return
    rw.print_to_stdstream = _filtered(current)
