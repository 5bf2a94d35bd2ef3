from typing import Any

from mstar.export.runtime.toolkit import DefaultToolkit, _mx_logger

# Stand-ins for what the harness and the assembler define ahead of this part.
Memory: Any = None
KNOBS: dict = {}
_MX_PROGRAM: dict = {"hash": "", "label": ""}

# ---- EXPORT BELOW ----
# ================================== persistence ===================================================
import json as _mx_json  # noqa: E402
import os as _mx_os  # noqa: E402
import sqlite3 as _mx_sqlite3  # noqa: E402
import threading as _mx_threading  # noqa: E402
import uuid as _mx_uuid  # noqa: E402
from datetime import datetime as _mx_datetime  # noqa: E402


class StoreError(RuntimeError):
    """The memory store cannot be used (a path that is not writable, a store of the wrong kind)."""


def _mx_now():
    return _mx_datetime.now().strftime("%Y-%m-%dT%H:%M")


class _MxSqliteLog:
    """Every user's events in one SQLite file, append-only, in write order (``seq``).

    WAL with ``synchronous=FULL``: a write is on disk when ``append`` returns. Writers in several
    processes queue on SQLite's lock (``BEGIN IMMEDIATE`` with a busy timeout), so none is lost.
    ``(user_id, kind, event_id)`` is unique: writing the same event twice stores it once.
    """

    incremental = True

    def __init__(self, path):
        path = _mx_os.path.abspath(_mx_os.fspath(path))
        folder = _mx_os.path.dirname(path)
        if not _mx_os.path.isdir(folder):
            raise StoreError(f"memory store {path}: the folder {folder} does not exist: create it or pass another path")
        if _mx_os.path.isdir(path):
            raise StoreError(f"memory store {path} is a folder: pass the path of a SQLite file, e.g. {path}/memory.db")
        if not _mx_os.access(folder, _mx_os.W_OK) or (_mx_os.path.exists(path) and not _mx_os.access(path, _mx_os.W_OK)):
            raise StoreError(f"memory store {path} is not writable: pass a path in a folder you can write to")
        self.path = path
        self._lock = _mx_threading.Lock()
        try:
            self._db = _mx_sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS mstar_events (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " user_id TEXT NOT NULL, kind TEXT NOT NULL, event_id TEXT NOT NULL, body TEXT NOT NULL,"
                " UNIQUE (user_id, kind, event_id));"
                "CREATE INDEX IF NOT EXISTS mstar_events_user ON mstar_events (user_id, seq);"
                "CREATE TABLE IF NOT EXISTS mstar_snapshots (user_id TEXT NOT NULL, program TEXT NOT NULL,"
                " seq INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (user_id, program));")
        except _mx_sqlite3.Error as e:
            raise StoreError(f"memory store {path}: {e}: pass the path of a writable SQLite file") from None

    def append(self, user_id, kind, event_id, body):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("INSERT OR IGNORE INTO mstar_events (user_id, kind, event_id, body)"
                                       " VALUES (?, ?, ?, ?)", (user_id, kind, event_id, body))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return cur.rowcount == 1

    def since(self, user_id, cursor):
        """Events of ``user_id`` after ``cursor`` (a seq), oldest first, as (seq, kind, body)."""
        with self._lock:
            return self._db.execute("SELECT seq, kind, body FROM mstar_events WHERE user_id = ? AND seq > ?"
                                    " ORDER BY seq", (user_id, cursor or 0)).fetchall()

    def snapshot_get(self, user_id, program):
        with self._lock:
            return self._db.execute("SELECT seq, body FROM mstar_snapshots WHERE user_id = ? AND program = ?",
                                    (user_id, program)).fetchone()

    def snapshot_put(self, user_id, program, seq, body):
        with self._lock:
            self._db.execute("INSERT INTO mstar_snapshots (user_id, program, seq, body) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT (user_id, program) DO UPDATE SET seq = excluded.seq, body = excluded.body"
                             " WHERE excluded.seq > mstar_snapshots.seq", (user_id, program, seq, body))


class _MxBaseStoreLog:
    """Events in a LangGraph ``BaseStore`` under ``(*namespace, user_id, "events")``.

    A store has no ordered append, so each item carries an ``order`` key (nanosecond time, then a random
    tail) and a replay sorts by it. Keys are ``kind:event_id``, so writing an event twice stores it once.
    """

    incremental = False

    def __init__(self, store, namespace=("mstar",)):
        self.store = store
        self.namespace = tuple(namespace)

    def _ns(self, user_id):
        # Namespace labels may not contain "." (LangGraph's rule); ids like e-mail addresses are escaped.
        return (*self.namespace, user_id.replace("%", "%25").replace(".", "%2E"), "events")

    def append(self, user_id, kind, event_id, body):
        import time

        key = f"{kind}:{event_id}"
        if self.store.get(self._ns(user_id), key) is not None:
            return False
        order = f"{time.time_ns():020d}:{_mx_uuid.uuid4().hex[:8]}"
        self.store.put(self._ns(user_id), key, {"order": order, "kind": kind, "body": body}, index=False)
        return True

    def since(self, user_id, cursor):
        items, offset = [], 0
        while True:
            page = self.store.search(self._ns(user_id), limit=1000, offset=offset)
            items.extend(page)
            if len(page) < 1000:
                break
            offset += len(page)
        # Exact namespace only: search() also returns deeper namespaces under the prefix.
        rows = sorted((it.value["order"], it.value["kind"], it.value["body"]) for it in items
                      if tuple(it.namespace) == self._ns(user_id))
        return [(i + 1, kind, body) for i, (_o, kind, body) in enumerate(rows) if i + 1 > (cursor or 0)]

    def snapshot_get(self, user_id, program):
        return None

    def snapshot_put(self, user_id, program, seq, body):
        return None


_mx_sqlite_logs = {}
_mx_sqlite_logs_lock = _mx_threading.Lock()


def _mx_log_for(store, namespace=("mstar",)):
    if isinstance(store, str | _mx_os.PathLike):
        key = _mx_os.path.abspath(_mx_os.fspath(store))
        with _mx_sqlite_logs_lock:
            if key not in _mx_sqlite_logs:
                _mx_sqlite_logs[key] = _MxSqliteLog(key)
            return _mx_sqlite_logs[key]
    if all(callable(getattr(store, m, None)) for m in ("get", "put", "search")):
        return _MxBaseStoreLog(store, namespace)
    raise StoreError(f"memory store: expected a SQLite path or a LangGraph BaseStore, got {type(store).__name__}")


def _mx_event(event, fields):
    if isinstance(event, str):
        event = {"text": event}
    if not isinstance(event, dict):
        raise TypeError(f"write(): expected a str or an event dict, got {type(event).__name__}")
    ev = {**event, **fields}
    if not isinstance(ev.get("text"), str):
        raise ValueError("write(): the event's 'text' must be a str")
    ev["id"] = str(ev.get("id") or _mx_uuid.uuid4().hex)
    ev.setdefault("speaker", "user")
    ev["session"] = str(ev.get("session") or "1")
    ev["time"] = ev.get("time") or _mx_now()
    ev.setdefault("meta", {})
    return ev


class PersistentMemory:
    """One user's memory: the harness's ``Memory`` in front of an append-only event log.

    The log is the truth; the in-process ``Memory`` is a replay of it (from a snapshot when the
    harness offers ``state()`` / ``load_state()``). With a SQLite store every read and write first
    applies the events other processes appended since, so all processes converge on the same memory.
    """

    def __init__(self, log, user_id, toolkit=None, knobs=None, budget=1024, snapshot_every=1000):
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("open_memory(): user_id must be a non-empty str")
        self.user_id = user_id
        self.budget = budget
        self.toolkit = toolkit if toolkit is not None else DefaultToolkit()
        self.knobs = {**{k: spec["default"] for k, spec in KNOBS.items()}, **(knobs or {})}
        self._log = log
        self._lock = _mx_threading.RLock()
        self._snapshot_every = snapshot_every
        # A snapshot belongs to this program with these knob values, never to another.
        self._program = _MX_PROGRAM["hash"] + ":" + _mx_json.dumps(self.knobs, sort_keys=True, default=str)
        self._reset()

    def _saver(self):
        """The harness's snapshot method: ``state()``, or ``save_state()`` where ``state`` is data."""
        m = self.memory
        if not (self._log.incremental and callable(getattr(m, "load_state", None))):
            return None
        for name in ("state", "save_state"):
            fn = getattr(m, name, None)
            if callable(fn):
                return fn
        return None

    def _reset(self):
        self.memory = Memory(self.toolkit, dict(self.knobs))
        self._cursor, self._since_snapshot = 0, 0
        m = self.memory
        if self._saver() is not None:
            snap = self._log.snapshot_get(self.user_id, self._program)
            if snap is not None:
                m.load_state(_mx_json.loads(snap[1]))
                self._cursor = snap[0]
        self._catch_up()

    def _apply(self, kind, body):
        data = _mx_json.loads(body)
        if kind == "write":
            self.memory.write(data)
        elif kind == "manage" and callable(getattr(self.memory, "manage", None)):
            self.memory.manage(data["phase"])

    def _catch_up(self, own=None):
        failed = None
        for seq, kind, body in self._log.since(self.user_id, self._cursor):
            try:
                self._apply(kind, body)
            except Exception as e:  # noqa: BLE001 - one event the program rejects must not block the log
                # Skipped on every replay too, so all processes keep the same memory.
                _mx_logger.warning("memory of %s: event %s skipped: the program raised %s: %s",
                                   self.user_id, seq, type(e).__name__, e)
                if own is not None and own in body:
                    failed = e
            self._cursor = seq
            self._since_snapshot += 1
        # Every snapshot_every events, and at least a tenth of the log apart: a snapshot costs the whole
        # state, so spacing them by a share of its size keeps the amortised cost per write flat.
        if self._snapshot_every and self._since_snapshot >= max(self._snapshot_every, self._cursor // 10):
            try:
                self.snapshot()
            except (TypeError, ValueError) as e:
                # A state that is not JSON: stop snapshotting, keep replaying (always correct).
                _mx_logger.warning("memory of %s: snapshots off: the program's state is not JSON (%s)", self.user_id, e)
                self._snapshot_every = 0
        if failed is not None:
            raise failed

    def _append(self, kind, event_id, body):
        with self._lock:
            inserted = self._log.append(self.user_id, kind, event_id, body)
            if self._log.incremental:
                self._catch_up(own=body if inserted else None)
            elif inserted:
                self._cursor += 1
                self._apply(kind, body)
            return inserted

    def write(self, event, **fields):
        """Store one event (a str, or a dict with ``text`` and optionally ``id``, ``speaker``,
        ``session``, ``time``, ``meta``). Durable when it returns; False when the id was stored before."""
        ev = _mx_event(event, fields)
        return self._append("write", ev["id"], _mx_json.dumps(ev, default=str))

    def manage(self, phase="session_end"):
        """Run the harness's maintenance (logged, so a replay repeats it at the same point)."""
        return self._append("manage", _mx_uuid.uuid4().hex, _mx_json.dumps({"phase": phase}))

    def read(self, query, budget=None):
        """``{"context": str, "items": [...]}`` for a question (a str, or a query dict)."""
        q = {"question": query} if isinstance(query, str) else dict(query)
        q.setdefault("id", _mx_uuid.uuid4().hex)
        q.setdefault("time", _mx_now())
        q.setdefault("budget", budget or self.budget)
        with self._lock:
            if self._log.incremental:
                self._catch_up()
            return self.memory.read(q)

    def refresh(self):
        """Pick up events other processes wrote (automatic with a SQLite store; a full replay otherwise)."""
        with self._lock:
            if self._log.incremental:
                self._catch_up()
            else:
                self._reset()

    def snapshot(self):
        """Save the harness's state so the next open replays only the events after it."""
        with self._lock:
            saver = self._saver()
            if saver is None:
                return False
            self._log.snapshot_put(self.user_id, self._program, self._cursor, _mx_json.dumps(saver()))
            self._since_snapshot = 0
            return True

    def dump(self):
        fn = getattr(self.memory, "dump", None)
        return fn() if callable(fn) else []


def open_memory(store="memory.db", user_id="default", toolkit=None, knobs=None, budget=1024,
                namespace=("mstar",), snapshot_every=1000):
    """The memory of ``user_id``, kept in ``store``: a SQLite path (created if missing) or a LangGraph
    ``BaseStore`` (``InMemoryStore``, ``SqliteStore``, ``PostgresStore``...). Users never share memory."""
    return PersistentMemory(_mx_log_for(store, namespace), user_id, toolkit=toolkit, knobs=knobs,
                            budget=budget, snapshot_every=snapshot_every)
