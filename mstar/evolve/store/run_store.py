"""The run store: ``runs/<run-id>/run.db`` (SQLite), ``config.json`` and ``best.py`` (docs/ARCHITECTURE.md#run-store).

Durability. The database runs in WAL mode with ``synchronous=NORMAL``. In WAL mode a commit is a
single append to the write-ahead log; NORMAL skips the fsync at each commit but the appended frames
are already in the OS page cache, so a ``kill -9`` of mstar (the failure this store must survive)
never loses a committed transaction and never corrupts the file. Only an OS crash or power loss can
drop the last few commits, and then the database is still consistent and ``--resume`` redoes them.
FULL would add an fsync per evaluated episode for protection against power loss that a resumable
search does not need.

Every write is one transaction (``with store.tx():``): an episode's probe rows land together with the
episode's summary row, and the summary row is what marks the episode as done. So a kill at any moment
loses at most the evaluations in flight. One process writes (the engine); readers such as the
dashboard may read concurrently, which WAL allows.
"""

from __future__ import annotations

import ast
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS programs(
    id TEXT PRIMARY KEY, name TEXT NOT NULL, parents TEXT NOT NULL, island INTEGER NOT NULL,
    generation INTEGER NOT NULL, operator TEXT NOT NULL, source TEXT NOT NULL, knobs TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, note TEXT NOT NULL DEFAULT '', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations(
    program TEXT NOT NULL, split TEXT NOT NULL, episode TEXT NOT NULL,
    probe TEXT NOT NULL,            -- '' is the episode's summary row: present means the episode is done
    seq INTEGER NOT NULL,           -- the probe's position in the episode (-1: the summary row)
    metrics TEXT NOT NULL, tokens INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,
    latency REAL NOT NULL DEFAULT 0, diagnosis TEXT, created REAL NOT NULL,
    PRIMARY KEY(program, split, episode, probe)) WITHOUT ROWID;  -- rows live in the key's b-tree: -25% disk
CREATE TABLE IF NOT EXISTS llm_calls(
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, purpose TEXT NOT NULL, model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0, cached INTEGER NOT NULL DEFAULT 0,
    program TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL DEFAULT 'llm', ms REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS llm_cache(key TEXT PRIMARY KEY, reply TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS proposals(
    generation INTEGER NOT NULL, slot INTEGER NOT NULL, island INTEGER NOT NULL, operator TEXT NOT NULL,
    parents TEXT NOT NULL, program TEXT, outcome TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    screen REAL, train REAL, minibatch_evals INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
    PRIMARY KEY(generation, slot));
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
"""

# Outcomes of a proposal. "pending": proposed and stored, not yet decided (a resume picks it up).
OUTCOMES = ("pending", "accepted", "rejected-novelty", "rejected-cascade", "failed")


class ProgramRecord(BaseModel):
    id: str
    name: str
    parents: list[str] = Field(default_factory=list)
    island: int = 0
    generation: int = 0
    operator: str = "seed"
    source: str
    knobs: dict[str, Any] = Field(default_factory=dict)  # resolved knob values the program runs with
    status: str = "pending"  # seed | pending | accepted | rejected | failed
    error: str | None = None
    note: str = ""
    created: float = Field(default_factory=time.time)


class ProposalRecord(BaseModel):
    generation: int
    slot: int
    island: int
    operator: str
    parents: list[str]
    program: str | None = None
    outcome: str = "pending"
    reason: str = ""
    screen: float | None = None
    train: float | None = None
    minibatch_evals: int = 0


class RunStore:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so every transaction is explicit.
        self.conn = sqlite3.connect(self.dir / "run.db", isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        cols = {r[1] for r in self.conn.execute("PRAGMA table_info(llm_calls)")}
        for col, decl in (("program", "TEXT NOT NULL DEFAULT ''"), ("kind", "TEXT NOT NULL DEFAULT 'llm'"),
                          ("ms", "REAL NOT NULL DEFAULT 0"), ("error", "TEXT NOT NULL DEFAULT ''")):
            if col not in cols:  # a run.db from before calls were attributed: resumable all the same
                self.conn.execute(f"ALTER TABLE llm_calls ADD COLUMN {col} {decl}")
        self._depth = 0

    @property
    def path(self) -> Path:
        return self.dir / "run.db"

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic write. Nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    # --- programs ---------------------------------------------------------------------------------
    def add_program(self, p: ProgramRecord) -> bool:
        """Insert a program unless its id is known; returns whether it was new."""
        with self.tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO programs VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                (p.id, p.name, json.dumps(p.parents), p.island, p.generation, p.operator, p.source,
                 json.dumps(p.knobs, sort_keys=True), p.status, p.error, p.note, p.created),
            )
            return cur.rowcount == 1

    def get_program(self, pid: str) -> ProgramRecord | None:
        row = self.conn.execute("SELECT * FROM programs WHERE id=?", (pid,)).fetchone()
        return self._program(row) if row else None

    def programs(self) -> list[ProgramRecord]:
        return [self._program(r) for r in self.conn.execute("SELECT * FROM programs ORDER BY created, rowid")]

    @staticmethod
    def _program(r: tuple) -> ProgramRecord:
        return ProgramRecord(id=r[0], name=r[1], parents=json.loads(r[2]), island=r[3], generation=r[4],
                             operator=r[5], source=r[6], knobs=json.loads(r[7]), status=r[8], error=r[9],
                             note=r[10], created=r[11])

    def set_status(self, pid: str, status: str, error: str | None = None) -> None:
        with self.tx() as c:
            c.execute("UPDATE programs SET status=?, error=COALESCE(?, error) WHERE id=?", (status, error, pid))

    # --- evaluations ------------------------------------------------------------------------------
    def add_episode(self, program: str, split: str, episode: str, summary: dict[str, Any],
                    probes: list[dict[str, Any]], cost: float = 0.0, llm_tokens: int = 0) -> None:
        """All rows of one evaluated episode, in one transaction. ``probes``: dicts with keys
        probe, metrics, tokens (context tokens), latency, diagnosis. The summary row (probe '') holds
        the episode's LLM tokens and cost."""
        now = time.time()
        rows = [(program, split, episode, p["probe"], i, json.dumps(p["metrics"]), int(p.get("tokens", 0)), 0.0,
                 float(p.get("latency", 0.0)), json.dumps(p["diagnosis"]) if p.get("diagnosis") else None, now)
                for i, p in enumerate(probes)]
        rows.append((program, split, episode, "", -1, json.dumps(summary), int(llm_tokens), float(cost),
                     float(summary.get("wall_s", 0.0)) * 1000, None, now))
        with self.tx() as c:
            c.executemany("INSERT OR REPLACE INTO evaluations VALUES(?,?,?,?,?,?,?,?,?,?,?)", rows)

    def done_episodes(self) -> set[tuple[str, str, str]]:
        return {tuple(r) for r in self.conn.execute("SELECT program, split, episode FROM evaluations WHERE probe=''")}

    def evaluation_rows(self) -> Iterator[tuple]:
        """(program, split, episode, probe, metrics, tokens, cost, diagnosis) of finished episodes only."""
        yield from self.conn.execute(
            "SELECT e.program, e.split, e.episode, e.probe, e.metrics, e.tokens, e.cost, e.diagnosis "
            "FROM evaluations e JOIN evaluations s ON s.program=e.program AND s.split=e.split "
            "AND s.episode=e.episode AND s.probe='' ORDER BY e.program, e.split, e.episode, e.seq")

    def probe_metrics(self, program: str, split: str) -> Iterator[tuple[str, str, str]]:
        """(episode, probe, metrics) of ``program``'s probes on ``split``, finished episodes only."""
        yield from self.conn.execute(
            "SELECT e.episode, e.probe, e.metrics FROM evaluations e JOIN evaluations s ON s.program=e.program "
            "AND s.split=e.split AND s.episode=e.episode AND s.probe='' WHERE e.program=? AND e.split=? "
            "AND e.seq>=0 ORDER BY e.episode, e.seq", (program, split))

    def count_episodes(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM evaluations WHERE probe=''").fetchone()[0]

    # --- proposals --------------------------------------------------------------------------------
    def put_proposal(self, p: ProposalRecord, program: ProgramRecord | None = None) -> None:
        """A proposal and (when it produced one) its program, together: a resume finds both or neither."""
        with self.tx() as c:
            if program is not None:
                self.add_program(program)
            c.execute("INSERT OR REPLACE INTO proposals VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                      (p.generation, p.slot, p.island, p.operator, json.dumps(p.parents), p.program, p.outcome,
                       p.reason, p.screen, p.train, p.minibatch_evals, time.time()))
            if p.outcome != "pending":
                self._event(c, "proposal", p.model_dump())

    def get_proposal(self, generation: int, slot: int) -> ProposalRecord | None:
        r = self.conn.execute("SELECT * FROM proposals WHERE generation=? AND slot=?", (generation, slot)).fetchone()
        return self._proposal(r) if r else None

    def proposals(self) -> list[ProposalRecord]:
        return [self._proposal(r) for r in self.conn.execute("SELECT * FROM proposals ORDER BY generation, slot")]

    @staticmethod
    def _proposal(r: tuple) -> ProposalRecord:
        return ProposalRecord(generation=r[0], slot=r[1], island=r[2], operator=r[3], parents=json.loads(r[4]),
                              program=r[5], outcome=r[6], reason=r[7], screen=r[8], train=r[9], minibatch_evals=r[10])

    def decide(self, p: ProposalRecord, program_status: str | None = None, error: str | None = None) -> bool:
        """Record a proposal's outcome (and its event) once; a replay after resume changes nothing."""
        with self.tx() as c:
            cur = c.execute(
                "UPDATE proposals SET outcome=?, reason=?, screen=?, train=? WHERE generation=? AND slot=? "
                "AND outcome='pending'", (p.outcome, p.reason, p.screen, p.train, p.generation, p.slot))
            if cur.rowcount != 1:
                return False
            if p.program and program_status:
                c.execute("UPDATE programs SET status=?, error=COALESCE(?, error) WHERE id=?",
                          (program_status, error, p.program))
            self._event(c, "proposal", p.model_dump())
            return True

    def minibatch_evals(self) -> int:
        return self.conn.execute("SELECT COALESCE(SUM(minibatch_evals), 0) FROM proposals").fetchone()[0]

    # --- events, state, llm ledger ----------------------------------------------------------------
    @staticmethod
    def _event(c: sqlite3.Connection, kind: str, payload: dict[str, Any]) -> None:
        c.execute("INSERT INTO events(ts, kind, payload) VALUES(?,?,?)", (time.time(), kind, json.dumps(payload, default=str)))

    def event(self, kind: str, payload: dict[str, Any] | None = None) -> None:
        with self.tx() as c:
            self._event(c, kind, payload or {})

    def events(self, kind: str | None = None) -> list[tuple[float, str, dict[str, Any]]]:
        q = "SELECT ts, kind, payload FROM events" + (" WHERE kind=?" if kind else "") + " ORDER BY id"
        return [(r[0], r[1], json.loads(r[2])) for r in self.conn.execute(q, (kind,) if kind else ())]

    def get_state(self, key: str, default: Any = None) -> Any:
        r = self.conn.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return json.loads(r[0]) if r else default

    def metric_version(self) -> int:
        """The evidence-recall rule that scored this run (mstar.scoring.METRIC_VERSION); 1 for older runs."""
        return int(self.get_state("metric_version", 1))

    def set_state(self, key: str, value: Any) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO state VALUES(?,?)", (key, json.dumps(value)))

    def add_llm_call(self, purpose: str, model: str, prompt_tokens: int, completion_tokens: int,
                     cost: float, cached: bool, program: str = "", kind: str = "llm", ms: float = 0.0,
                     error: str = "") -> None:
        with self.tx() as c:
            c.execute("INSERT INTO llm_calls(ts, purpose, model, prompt_tokens, completion_tokens, tokens, cost, cached, "
                      "program, kind, ms, error) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                      (time.time(), purpose, model, prompt_tokens, completion_tokens, prompt_tokens + completion_tokens,
                       cost, int(cached), program, kind, float(ms), error))

    def llm_totals(self) -> tuple[int, float]:
        r = self.conn.execute("SELECT COALESCE(SUM(tokens),0), COALESCE(SUM(cost),0) FROM llm_calls").fetchone()
        return int(r[0]), float(r[1])

    def cache_get(self, key: str) -> dict[str, Any] | None:
        r = self.conn.execute("SELECT reply FROM llm_cache WHERE key=?", (key,)).fetchone()
        return json.loads(r[0]) if r else None

    def cache_put(self, key: str, reply: dict[str, Any]) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO llm_cache VALUES(?,?)", (key, json.dumps(reply)))

    # --- files ------------------------------------------------------------------------------------
    def write_best(self, source: str, knobs: dict[str, Any], header: str) -> Path:
        """``best.py``: the program with its knob values frozen in as KNOBS defaults, written atomically."""
        text = f"# {header}\n" + freeze_knobs(source, knobs)
        tmp = self.dir / "best.py.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.dir / "best.py")
        return self.dir / "best.py"


def freeze_knobs(source: str, values: dict[str, Any]) -> str:
    """Rewrite the ``KNOBS`` literal so each knob's default is ``values[name]`` (others untouched)."""
    tree = ast.parse(source)
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "KNOBS"):
            knobs = ast.literal_eval(node.value)
            changed = False
            for k, v in values.items():
                if k in knobs and knobs[k].get("default") != v:
                    knobs[k]["default"] = v
                    changed = True
            if not changed:
                return source
            lines = source.splitlines(keepends=True)
            body = "".join(f"    {k!r}: {spec!r},\n" for k, spec in knobs.items())
            new = f"KNOBS = {{\n{body}}}\n"
            return "".join(lines[: node.lineno - 1]) + new + "".join(lines[node.end_lineno:])
    return source
