"""Opening a run directory for reading, and telling what state the run is in.

The dashboard reads ``run.db`` while ``mstar evolve`` writes it. The store runs in WAL mode, where a
reader never blocks the writer, as long as the reader (a) opens the file read-only, so it can never
take the write lock, and (b) keeps its read transactions short, so the writer's checkpoints are not
held back. Every function here opens a read-only connection, reads in one transaction and closes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mstar.errors import MstarError

# The tables and columns this reader needs: a store without them was written by an older mstar.
REQUIRED = {
    "programs": {"id", "name", "parents", "island", "generation", "operator", "source", "status", "note", "created"},
    "evaluations": {"program", "split", "episode", "probe", "seq", "metrics", "tokens", "cost", "latency",
                    "diagnosis"},
    "proposals": {"generation", "slot", "island", "operator", "outcome", "reason", "program", "created"},
    "events": {"id", "ts", "kind", "payload"},
    "state": {"key", "value"},
    "llm_calls": {"purpose", "tokens", "cost"},
}


class RunReadError(MstarError):
    """A directory that cannot be shown as a run; the message names the path and what is wrong."""


@contextlib.contextmanager
def read_only(run_dir: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to ``run_dir/run.db`` holding one read transaction (a consistent snapshot)."""
    db = Path(run_dir) / "run.db"
    if not db.is_file():
        what = "does not exist" if not Path(run_dir).exists() else "is not an mstar run (no run.db)"
        raise RunReadError(f"{run_dir}: {what}")
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5,
                               isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise RunReadError(f"{db}: cannot open read-only: {e}") from None
    try:
        conn.execute("PRAGMA query_only=1")
        conn.execute("BEGIN")
        yield conn
    except sqlite3.DatabaseError as e:
        raise RunReadError(f"{db}: not readable as an mstar run store: {e}") from None
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("COMMIT")
        conn.close()


def check_schema(conn: sqlite3.Connection, db: Path) -> None:
    """Raise a clear error for a store this version cannot read (older layout, or not a run store)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        raise RunReadError(f"{db}: empty database: the run is just starting, or this is not an mstar run")
    if "programs" not in tables:
        raise RunReadError(f"{db}: not an mstar run store (no programs table)")
    for table, cols in REQUIRED.items():
        if table not in tables:
            raise RunReadError(f"{db}: store from an older mstar version (no {table} table); "
                               f"re-run it with this version, or open it with the mstar that wrote it")
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        missing = sorted(cols - have)
        if missing:
            raise RunReadError(f"{db}: store from an older mstar version ({table} lacks {', '.join(missing)}); "
                               f"re-run it with this version, or open it with the mstar that wrote it")


def load_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return {}
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunReadError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise RunReadError(f"{path}: expected a JSON object")
    return cfg


def lock_held(path: Path) -> bool | None:
    """Whether some process holds a flock on ``path`` (Linux /proc/locks); None when it cannot be told.

    Looking it up, rather than trying the lock ourselves, matters: a probe lock held for even a moment
    could make a starting ``mstar evolve`` think the run is taken.
    """
    try:
        st = path.stat()
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in locks.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a "->" marks a waiter and shifts the fields)
        if "->" in parts:
            parts.remove("->")
        if len(parts) >= 6 and parts[1] == "FLOCK":
            dev_ino = parts[5].split(":")
            if len(dev_ino) == 3 and dev_ino[2].isdigit() and int(dev_ino[2]) == st.st_ino:
                maj, mn = int(dev_ino[0], 16), int(dev_ino[1], 16)
                if (maj, mn) == (os.major(st.st_dev), os.minor(st.st_dev)):
                    return True
    return False


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_status(run_dir: Path, final: dict[str, Any] | None, last_pid: Any) -> str:
    """running | finished | stopped | failed.

    running: the run's lock is held (or, where locks cannot be listed, its last process is alive);
    finished: the final step ran after a normal stop (a generation, evaluation, time or budget limit);
    stopped: the final step ran after a user's stop (Ctrl-C, SIGTERM, the STOP file);
    failed: the process is gone and never reached the final step (crash or kill; ``--resume`` continues it).
    """
    held = lock_held(Path(run_dir) / ".lock") if (Path(run_dir) / ".lock").exists() else False
    if held or (held is None and _pid_alive(last_pid)):
        return "running"
    if final:
        reason = str(final.get("stop_reason") or "finished")
        user = ("terminated", "interrupted", "stop requested", "stop file", "sigint", "sigterm", "ctrl")
        return "stopped" if any(w in reason.lower() for w in user) else "finished"
    return "failed"
