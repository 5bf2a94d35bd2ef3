"""What a harness may see: the one place that builds the dicts handed to ``Memory.write`` and ``Memory.read``.

Everything is copied from an explicit allow-list, so a field added to ``Event`` or ``Probe`` later stays on
the host unless it is added here:

- event: ``id``, ``session``, ``time``, ``speaker``, ``text`` and ``meta`` holding only the keys the episode's
  suite declares visible (``Episode.visible_meta``; none by default);
- query: a neutral probe alias as ``id``, ``question``, ``time``, ``budget``.

Gold (answers, evidence, categories, abstention flags, ``has_answer``) lives on ``Probe`` / ``Event.meta`` and
never passes. Probe ids are replaced by aliases (``q0``, ``q1``, ...) numbered in a hash order of the host
ids, and probes due at the same point of the stream are read in alias order, so neither the id nor the
order of reads tells a category or an abstention question (a LongMemEval id ends in ``_abs``; LoCoMo's
questions are grouped by category in the file). Event and session ids are the suites' job: each suite
gives ids that carry no gold (tests/test_gold_isolation.py checks every registered suite).
"""

from __future__ import annotations

import hashlib
from typing import Any

from mstar.episodes import Episode, Event, Probe

EVENT_FIELDS = ("id", "session", "time", "speaker", "text")
QUERY_FIELDS = ("id", "question", "time", "budget")
OWN_ID = "mstar.own_id"  # Episode.meta (host-only): the suite's id of an episode whose id was namespaced


def event_input(event: Event, visible_meta: frozenset[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The dict handed to ``Memory.write`` for ``event``."""
    out: dict[str, Any] = {k: getattr(event, k) for k in EVENT_FIELDS}
    out["meta"] = {k: event.meta[k] for k in visible_meta if k in event.meta}
    return out


def query_input(probe: Probe, budget: int, alias: str) -> dict[str, Any]:
    """The dict handed to ``Memory.read`` for ``probe``: never its host id, never a gold field."""
    return {"id": alias, "question": probe.question, "time": probe.time, "budget": int(budget)}


def _rank_key(episode_id: str, probe_id: str) -> bytes:
    return hashlib.sha256(f"{episode_id}\x00{probe_id}".encode()).digest()


class EpisodeView:
    """The harness's view of one episode: event dicts, probe aliases and the order reads are made in."""

    def __init__(self, episode: Episode):
        self.visible_meta = tuple(episode.visible_meta)
        # A joint run namespaces episode ids ("locomo/conv-26"); the order keys on the suite's own id, so
        # a harness reads in the same order as under `mstar eval` of that suite (same scores, exactly).
        own = str(episode.meta.get(OWN_ID, episode.id))
        ranked = sorted(episode.probes, key=lambda p: _rank_key(own, p.id))
        self.alias = {p.id: f"q{k}" for k, p in enumerate(ranked)}
        self._rank = {p.id: k for k, p in enumerate(ranked)}

    def event(self, event: Event) -> dict[str, Any]:
        return event_input(event, self.visible_meta)

    def query(self, probe: Probe, budget: int) -> dict[str, Any]:
        return query_input(probe, budget, self.alias[probe.id])

    def read_order(self, probes: list[Probe]) -> list[Probe]:
        """``probes`` (due at one point of the stream) in the order they are read: by alias."""
        return sorted(probes, key=lambda p: self._rank[p.id])
