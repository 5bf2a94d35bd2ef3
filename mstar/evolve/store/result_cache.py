"""Seed results kept across runs: a library seed scored on an episode gives the same result every time.

Every run scores its seeds on train (the seed phase), on val and test (the final step) and on each
``--transfer`` suite; for a seed of the library with its default knobs these results do not change from
one run to the next. They are kept in ``<runs-dir>/.cache/seed_results.db`` and reused, so a second run
on the same data starts searching at once and its transfer step scores only the winner.

A result is reused only when everything that could change it is the same: the program (its id hashes
source and knob values), the episode (a hash of its full content, ids included), the evaluation config
(budget, diagnosis factor, QA mode, session limits), the embedder, the sandbox backend, the metric version
and mstar's version. Failed episodes are never kept (a timeout on a busy machine is not a property of the
seed), and a run with a model keeps nothing (a model's replies are not a function of the episode). The
cached result is kept with the diagnoses of its missed probes (not its memory dump, which only the
diagnosis reads) and goes through the same digest and store as a fresh one, so a run reads the same
rows either way. Runs with ``--no-seed-cache`` (or ``MSTAR_NO_CACHE=1``) neither read nor write it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Any

from mstar.episodes import Episode
from mstar.evaluate import EpisodeResult
from mstar.scoring.evidence import ProbeScore

SCHEMA = "CREATE TABLE IF NOT EXISTS results(key TEXT PRIMARY KEY, result BLOB NOT NULL, created REAL NOT NULL)"


def episode_digest(episode: Episode) -> str:
    return hashlib.sha256(episode.model_dump_json().encode()).hexdigest()


def context_digest(**parts: Any) -> str:
    """What, besides the program and the episode, a result depends on (a run computes it once)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def to_json(res: EpisodeResult) -> str:
    return json.dumps(dataclasses.asdict(res))


def from_json(text: str) -> EpisodeResult:
    return from_dict(json.loads(text))


def from_dict(d: dict[str, Any]) -> EpisodeResult:
    d = dict(d)
    d["probes"] = [ProbeScore(**p) for p in d["probes"]]
    if d.get("failure") is not None:
        d["failure"] = tuple(d["failure"])
    return EpisodeResult(**d)


Diagnoses = dict[str, dict[str, Any]]  # the missed probes' diagnoses by probe id, as the store keeps them


class ResultCache:
    """A small SQLite table keyed by (program, episode content, context); safe for runs side by side."""

    def __init__(self, path: Path, context: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.context = context
        self._digests: dict[int, tuple[Episode, str]] = {}
        self.hits = 0
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)

    def _key(self, program_id: str, episode: Episode) -> str:
        # Memoised per episode object (a run's episodes never change; hashing a haystack is not free);
        # the object is kept so its id cannot be reused by another.
        held = self._digests.get(id(episode))
        if held is None or held[0] is not episode:
            held = self._digests[id(episode)] = (episode, episode_digest(episode))
        d = held[1]
        return hashlib.sha256(f"{program_id}\x00{d}\x00{self.context}".encode()).hexdigest()

    def get(self, program_id: str, episode: Episode) -> tuple[EpisodeResult, Diagnoses] | None:
        """The result (without its memory dump) and its diagnoses, or None."""
        try:
            row = self._db.execute("SELECT result FROM results WHERE key=?", (self._key(program_id, episode),)).fetchone()
        except sqlite3.Error:
            return None  # a locked or damaged cache is a miss
        if row is None:
            return None
        try:
            entry = json.loads(zlib.decompress(row[0]).decode())
            res, diags = from_dict(entry["result"]), dict(entry["diagnoses"])
        except (zlib.error, ValueError, TypeError, KeyError):
            return None  # a damaged or older entry is a miss; the fresh result replaces it
        if res.episode_id != episode.id or res.failure is not None:
            return None
        self.hits += 1
        return res, diags

    def put(self, program_id: str, episode: Episode, res: EpisodeResult, diags: Diagnoses) -> None:
        """Keep ``res`` with its diagnoses. The memory dump is dropped: diagnosis is its only reader, and
        it is most of the size (a LongMemEval haystack's dump is ~0.5 MB)."""
        if res.failure is not None:
            return
        entry = {"result": dataclasses.asdict(dataclasses.replace(res, dump=None)), "diagnoses": diags}
        blob = zlib.compress(json.dumps(entry).encode(), 6)
        try:
            self._db.execute("INSERT OR REPLACE INTO results(key, result, created) VALUES (?, ?, ?)",
                             (self._key(program_id, episode), blob, time.time()))
        except sqlite3.Error:
            pass  # a locked, full or damaged cache costs a re-evaluation next time, never this run

    def close(self) -> None:
        self._db.close()
