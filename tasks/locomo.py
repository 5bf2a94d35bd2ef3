"""LoCoMo (Maharana et al., 2024): very long-term multi-session conversations with QA.

File: ``locomo10.json`` (github snap-research/LoCoMo, ``data/locomo10.json``; CC BY-NC 4.0, not shipped).
Each turn becomes one event ``D<session>:<turn>``; an image turn's BLIP caption is folded into its text
as ``[image: ...]``. Session date-times ("1:56 pm on 8 May, 2023") become ISO. Evidence ids are
normalised (split on ';' and whitespace, leading zeros dropped, "D:11:26" read as "D11:26"); ids that
still name no turn are dropped and counted in the episode's meta. Categories use the official mapping.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from mstar.episodes import Episode, Event, Probe
from mstar.errors import DataError
from mstar.tasks.base import check_split, read_json, resolve_data

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}

DEFAULT_SPLITS = {
    "train": ("conv-26", "conv-30", "conv-41", "conv-42", "conv-43"),
    "val": ("conv-44",),
    "test": ("conv-47", "conv-48", "conv-49", "conv-50"),
}

_EVIDENCE_RE = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")
_SESSION_KEY = re.compile(r"session_(\d+)$")


def parse_locomo_time(text: str) -> str:
    """'1:56 pm on 8 May, 2023' -> '2023-05-08T13:56'."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").strftime("%Y-%m-%dT%H:%M")


def normalise_evidence(raw: list[Any]) -> list[str]:
    out: list[str] = []
    for item in raw:
        for s, t in _EVIDENCE_RE.findall(str(item)):
            eid = f"D{int(s)}:{int(t)}"
            if eid not in out:
                out.append(eid)
    return out


def _hash_split(sample_id: str) -> str:
    h = int(hashlib.sha256(sample_id.encode()).hexdigest(), 16) % 10
    return "train" if h < 6 else ("val" if h < 7 else "test")


class LocomoTask:
    name = "locomo"
    description = "LoCoMo: 10 very long multi-session conversations, 1,986 questions in 5 categories"
    needs_data = True
    data_hint = "locomo10.json from github snap-research/LoCoMo (data/locomo10.json); CC BY-NC 4.0"

    def __init__(self, data: str | Path | None = None, **_: Any):
        self.path = resolve_data(data, "locomo10.json", "locomo")
        self._all: list[Episode] | None = None

    def episodes(self, split: str = "all") -> list[Episode]:
        check_split(split)
        if self._all is None:
            self._all = self._load()
        if split == "all":
            return list(self._all)
        ids = {e.id for e in self._all}
        if ids & {c for cs in DEFAULT_SPLITS.values() for c in cs}:
            wanted = set(DEFAULT_SPLITS[split])
            return [e for e in self._all if e.id in wanted]
        # A file in LoCoMo's format with other conversations: a stable split by sample id.
        return [e for e in self._all if _hash_split(e.id) == split]

    def _load(self) -> list[Episode]:
        raw = read_json(self.path)
        if not isinstance(raw, list):
            raise DataError(self.path, f"expected a list of conversations, got {type(raw).__name__}")
        episodes = [self._episode(i, conv) for i, conv in enumerate(raw)]
        seen: set[str] = set()
        for ep in episodes:
            if ep.id in seen:
                raise DataError(self.path, f"duplicate sample_id {ep.id!r}", "sample_id")
            seen.add(ep.id)
        return episodes

    def _episode(self, i: int, conv: Any) -> Episode:
        if not isinstance(conv, dict):
            raise DataError(self.path, "expected an object", f"[{i}]")
        for key in ("sample_id", "conversation", "qa"):
            if key not in conv:
                raise DataError(self.path, "missing", f"[{i}].{key}")
        sid = str(conv["sample_id"])
        c = conv["conversation"]
        if not isinstance(c, dict):
            raise DataError(self.path, "expected an object", f"[{i}].conversation")
        sessions = sorted(
            (int(m.group(1)), k) for k in c if (m := _SESSION_KEY.match(k)) and isinstance(c[k], list)
        )
        events: list[Event] = []
        last_time: str | None = None
        for n, key in sessions:
            dt_key = f"{key}_date_time"
            when = None
            if dt_key in c:
                try:
                    when = parse_locomo_time(str(c[dt_key]))
                except ValueError:
                    raise DataError(self.path, f"unparseable date-time {c[dt_key]!r}", f"[{i}].conversation.{dt_key}") from None
                last_time = when
            for j, turn in enumerate(c[key]):
                where = f"[{i}].conversation.{key}[{j}]"
                if not isinstance(turn, dict) or "dia_id" not in turn or "text" not in turn:
                    raise DataError(self.path, "a turn needs dia_id and text", where)
                text = str(turn["text"])
                if turn.get("blip_caption"):
                    text = f"{text} [image: {turn['blip_caption']}]"
                meta = {"image": True} if turn.get("img_url") or turn.get("blip_caption") else {}
                eid = normalise_evidence([turn["dia_id"]])
                if not eid:
                    raise DataError(self.path, f"malformed dia_id {turn['dia_id']!r}", where + ".dia_id")
                events.append(Event(id=eid[0], session=str(n), time=when, speaker=str(turn.get("speaker", "")), text=text, meta=meta))
        known = {e.id for e in events}
        probes: list[Probe] = []
        dropped = 0
        if not isinstance(conv["qa"], list):
            raise DataError(self.path, "expected a list", f"[{i}].qa")
        for q_i, qa in enumerate(conv["qa"]):
            where = f"[{i}].qa[{q_i}]"
            if not isinstance(qa, dict) or "question" not in qa:
                raise DataError(self.path, "a question needs a 'question' field", where)
            cat = qa.get("category")
            if cat not in CATEGORIES:
                raise DataError(self.path, f"unknown category {cat!r} (expected 1-5)", where + ".category")
            ev = normalise_evidence(qa.get("evidence") or [])
            kept = [e for e in ev if e in known]
            dropped += len(ev) - len(kept)
            answer = qa.get("answer")
            meta: dict[str, Any] = {"category_id": cat}
            if "adversarial_answer" in qa:
                meta["adversarial_answer"] = str(qa["adversarial_answer"])
            probes.append(
                Probe(
                    id=f"{sid}:q{q_i}",
                    question=str(qa["question"]),
                    time=last_time,
                    answer=None if answer is None else str(answer),
                    evidence=kept,
                    category=CATEGORIES[cat],
                    meta=meta,
                )
            )
        speakers = [c.get("speaker_a"), c.get("speaker_b")]
        return Episode(id=sid, events=events, probes=probes, meta={"speakers": speakers, "dropped_evidence_ids": dropped})
