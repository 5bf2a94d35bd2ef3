"""Where the broker keeps its response cache and its ledger: the ``CallStore`` protocol, one
``CallRecord`` per model call, and ``SQLiteCallStore`` (one SQLite file, what ``mstar eval`` uses; the
evolve run's ``run.db`` is ``mstar.evolve.store.ledger.RunStoreCalls``)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel


class CallRecord(BaseModel):
    ts: float
    run: str
    purpose: str
    kind: str  # "llm" | "embed"
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cached: bool = False
    ms: float = 0.0
    program: str = ""  # the candidate a harness call was made for ('' for the run's own calls)
    error: str = ""  # a call that failed for good (its tokens, if a server spent any, are unknown: 0)


class CallStore(Protocol):
    """Where a broker keeps its response cache and its ledger."""

    def cache_get(self, key: str) -> dict[str, Any] | None: ...
    def cache_put(self, key: str, kind: str, response: dict[str, Any]) -> None: ...
    def record(self, rec: CallRecord) -> None: ...
    def spent(self, run: str) -> tuple[int, float]: ...  # (tokens, USD) recorded so far for the run
    def calls(self, run: str) -> list[CallRecord]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache(key TEXT PRIMARY KEY, kind TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS calls(id INTEGER PRIMARY KEY, ts REAL NOT NULL, run TEXT NOT NULL, purpose TEXT NOT NULL,
    kind TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL, cached INTEGER NOT NULL, ms REAL NOT NULL, program TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '');
"""


class SQLiteCallStore:
    """A cache and a ledger in one SQLite file (``:memory:`` without a path), shared by runs."""

    def __init__(self, path: str | Path | None = None):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(calls)")}
        for col in ("program", "error"):  # a cache file written before calls were attributed
            if col not in cols:
                self._db.execute(f"ALTER TABLE calls ADD COLUMN {col} TEXT NOT NULL DEFAULT ''")

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM cache WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def cache_put(self, key: str, kind: str, response: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO cache VALUES(?,?,?,?)", (key, kind, json.dumps(response), time.time()))

    def record(self, rec: CallRecord) -> None:
        with self._lock:
            self._db.execute("INSERT INTO calls(ts, run, purpose, kind, model, prompt_tokens, completion_tokens, cost, "
                             "cached, ms, program, error) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                             (rec.ts, rec.run, rec.purpose, rec.kind, rec.model, rec.prompt_tokens,
                              rec.completion_tokens, rec.cost, int(rec.cached), rec.ms, rec.program, rec.error))

    def spent(self, run: str) -> tuple[int, float]:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(prompt_tokens+completion_tokens),0), COALESCE(SUM(cost),0) "
                                   "FROM calls WHERE run=?", (run,)).fetchone()
        return int(row[0]), float(row[1])

    def calls(self, run: str) -> list[CallRecord]:
        with self._lock:
            rows = self._db.execute("SELECT ts, run, purpose, kind, model, prompt_tokens, completion_tokens, cost, "
                                    "cached, ms, program, error FROM calls WHERE run=? ORDER BY id", (run,)).fetchall()
        keys = list(CallRecord.model_fields)
        return [CallRecord(**dict(zip(keys, r, strict=True))) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
