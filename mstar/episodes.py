"""Events, probes and episodes: what a task suite yields and what a harness sees (docs/ARCHITECTURE.md#tasks)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    """One observed turn. Image turns carry their caption inside ``text``."""

    model_config = ConfigDict(frozen=True)

    id: str
    session: str
    time: str | None = None
    speaker: str = ""
    text: str
    meta: dict[str, Any] = Field(default_factory=dict)

    def as_input(self, visible_meta: tuple[str, ...] = ()) -> dict[str, Any]:
        """The dict handed to ``Memory.write`` (``mstar.visible``: allow-listed fields; ``meta`` keys only
        when named in ``visible_meta``). ``meta`` itself stays on the host."""
        from mstar.visible import event_input

        return event_input(self, visible_meta)


class Probe(BaseModel):
    """A question with its gold answer and evidence. Only ``id``, ``question``, ``time`` reach the harness."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    time: str | None = None
    answer: str | None = None
    evidence: list[str] = Field(default_factory=list)
    category: str = "default"
    # Session-level evidence (LongMemEval's answer_session_ids), for session-level recall.
    evidence_sessions: list[str] = Field(default_factory=list)
    # Abstention probes have no supporting evidence by design and are left out of recall metrics.
    abstention: bool = False
    # Number of events of the episode written before this probe is asked; None means after all of them.
    position: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def as_query(self, budget: int, alias: str = "q0") -> dict[str, Any]:
        """The dict handed to ``Memory.read`` (``mstar.visible``): a neutral ``alias`` for the id, the question,
        its time and the token budget; no gold field."""
        from mstar.visible import query_input

        return query_input(self, budget, alias)

    @property
    def scored_for_recall(self) -> bool:
        return bool(self.evidence) and not self.abstention


class Episode(BaseModel):
    """A stream of events and the probes asked along (or after) it. Splits are made by episode."""

    id: str
    events: list[Event]
    probes: list[Probe]
    meta: dict[str, Any] = Field(default_factory=dict)
    # Event meta keys the suite declares visible to the harness (mstar.visible); every other key is host-only.
    visible_meta: tuple[str, ...] = ()

    def schedule(self) -> list[tuple[int, list[Probe]]]:
        """Probes grouped by the number of events written before they are asked, in stream order."""
        n = len(self.events)
        groups: dict[int, list[Probe]] = {}
        for p in self.probes:
            pos = n if p.position is None else max(0, min(p.position, n))
            groups.setdefault(pos, []).append(p)
        return sorted(groups.items())
