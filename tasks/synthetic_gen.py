"""The synthetic episode generator: one seeded, independent episode per (seed, index).

Plan, lay out, then write. A small cast of speakers chats in dated sessions a few days apart. The plan
holds fact *units*: an attribute of a person with its later updates (a chain), a relation between two
people, or something a speaker did on the day of a session. Units are shuffled and kept up to a share
of the event count, spread over random stream positions (a chain keeps its order), and every other
position is filler small talk that reuses the facts' names and words without asserting anything.
Probes are drawn from what was laid out, so every evidence id names an event whose text states the fact.

Cost is linear in the event count with a few random draws per event, and nothing per event is kept
beyond the event itself (built with pydantic's validating constructor, which is faster than
``model_construct`` here), so 100k events take seconds.
"""

from __future__ import annotations

import gc
import random
from datetime import date, timedelta
from typing import Any

from mstar.episodes import Episode, Event, Probe
from mstar.tasks import synthetic_vocab as V

ATTRS = ("job", "city", "pet", "hobby", "car")
CATEGORIES = ("single-hop", "multi-hop", "temporal", "knowledge-update", "abstention")
FACT_SHARE = 0.5  # at most this share of the events state facts; the rest is filler
MAX_SESSIONS = 1500  # beyond this, sessions get longer instead of spanning centuries
TURNS_PER_SESSION = 24

# Each planned fact: (speaker, text, tag). Tags: ("chain", subject, attr, answer),
# ("rel", subject, relation word, target), ("act", speaker, answer).
Fact = tuple[str, str, tuple]


def _value(rng: random.Random, attr: str, avoid: str | None = None) -> tuple[str, dict[str, str]]:
    """A fresh value of ``attr``: (answer, template fields), different from ``avoid``."""
    while True:
        if attr == "job":
            ans = rng.choice(V.JOBS)
            fields = {"job": ans}
        elif attr == "city":
            ans = rng.choice(V.CITIES)
            fields = {"city": ans}
        elif attr == "pet":
            ans = rng.choice(V.PETS)
            fields = {"pet": ans, "petname": rng.choice(V.PET_NAMES)}
        elif attr == "hobby":
            ans = rng.choice(V.HOBBIES)
            fields = {"hobby": ans}
        else:
            ans = rng.choice(V.CARS)
            fields = {"car": ans, "color": rng.choice(V.CAR_COLORS)}
        if ans != avoid:
            return ans, fields


def _sentence(template: str, **fields: str) -> str:
    text = template.format(**fields)
    return text[0].upper() + text[1:]


class _Cast:
    """Who is in the episode: speakers (first names) and people they talk about (full names)."""

    def __init__(self, rng: random.Random, n_events: int):
        n_cast = 3 if n_events < 200 else 4
        firsts = [(n, "f") for n in V.FEMALE] + [(n, "m") for n in V.MALE]
        picked = rng.sample(firsts, n_cast)
        self.speakers = [n for n, _ in picked]
        self.gender = {n: g for n, g in picked}
        rest = [f for f in firsts if f[0] not in self.gender]
        n_people = max(2, min(n_events // 45, len(rest) * len(V.LAST)))
        self.people: list[str] = []
        for k in rng.sample(range(len(rest) * len(V.LAST)), n_people):
            (first, g), last = rest[k // len(V.LAST)], V.LAST[k % len(V.LAST)]
            name = f"{first} {last}"
            self.people.append(name)
            self.gender[name] = g
        self.everyone = self.speakers + self.people


def _plan(rng: random.Random, cast: _Cast, n_events: int) -> list[Fact]:
    units: list[list[Fact]] = []
    speakers = cast.speakers
    for subj in cast.everyone:
        own = subj in speakers
        for attr in rng.sample(ATTRS, rng.randint(2, 4)):  # never all five: leaves gaps for abstention
            n_upd = 0
            r = rng.random()
            if r < 0.05:
                n_upd = 2
            elif r < 0.35:
                n_upd = 1
            chain: list[Fact] = []
            prev = None
            for k in range(n_upd + 1):
                ans, fields = _value(rng, attr, prev)
                prev = ans
                if own:
                    pool = V.SELF[attr] if k == 0 else V.SELF_UPDATE[attr]
                    chain.append((subj, _sentence(rng.choice(pool), **fields), ("chain", subj, attr, ans)))
                else:
                    pool = V.OTHER[attr] if k == 0 else V.OTHER_UPDATE[attr]
                    text = _sentence(rng.choice(pool), s=subj, **fields)
                    chain.append((rng.choice(speakers), text, ("chain", subj, attr, ans)))
            units.append(chain)
        n_rel = rng.randint(1, 3) if own else int(rng.random() < 0.3)
        for rel in rng.sample(V.RELATIONS, n_rel):
            target = rng.choice(cast.people)
            if target == subj:
                continue
            word = rel[0] if cast.gender[target] == "f" else rel[1]
            if own:
                fact = (subj, _sentence(rng.choice(V.REL_SELF), rel=word, t=target), ("rel", subj, word, target))
            else:
                text = _sentence(rng.choice(V.REL_OTHER), s=subj, rel=word, t=target)
                fact = (rng.choice(speakers), text, ("rel", subj, word, target))
            units.append([fact])
    for _ in range(max(1, n_events // 12)):
        who = rng.choice(speakers)
        ans, tail = rng.choice(V.ACTIVITIES)
        units.append([(who, _sentence(rng.choice(V.ACTIVITY), a=tail), ("act", who, ans))])
    rng.shuffle(units)
    cap = max(1, int(n_events * FACT_SHARE))
    facts: list[Fact] = []
    for u in units:
        if len(facts) + len(u) <= cap:
            facts.extend(u)
    return facts


def _sessions(rng: random.Random, n_events: int) -> list[int]:
    """Start index of every session (first is 0); lengths jitter by a third around the mean."""
    n_sess = max(1, min(MAX_SESSIONS, round(n_events / TURNS_PER_SESSION)))
    base = n_events / n_sess
    return [0] + [round(k * base + rng.uniform(-base / 3, base / 3)) for k in range(1, n_sess)]


def _fillers(cast: _Cast) -> dict[str, list[str]]:
    return {"n": cast.everyone, "c": list(V.CITIES), "j": list(V.JOBS), "p": list(V.PETS), "h": list(V.HOBBIES),
            "v": list(V.CARS), "a": [a for a, _ in V.ACTIVITIES]}


def _long_date(iso: str) -> str:
    d = date.fromisoformat(iso)
    return f"{d:%B} {d.day}, {d.year}"


def generate_episode(seed: int, index: int, n_events: int, n_probes: int, interleave: float) -> Episode:
    # Millions of new, acyclic objects would trigger the cyclic collector over and over (quadratic-ish).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(seed, index, n_events, n_probes, interleave)
    finally:
        if was_enabled:
            gc.enable()


def _generate(seed: int, index: int, n_events: int, n_probes: int, interleave: float) -> Episode:
    rng = random.Random(f"mstar-synthetic:{seed}:{index}")
    cast = _Cast(rng, n_events)
    facts = _plan(rng, cast, n_events)

    # Layout: random distinct positions; a chain's facts keep their order along the stream.
    positions = rng.sample(range(n_events), len(facts))
    chains: dict[tuple[str, str], list[int]] = {}
    for f, (_, _, tag) in enumerate(facts):
        if tag[0] == "chain":
            chains.setdefault((tag[1], tag[2]), []).append(f)
    for members in chains.values():
        for f, p in zip(members, sorted(positions[f] for f in members), strict=True):
            positions[f] = p
    slot = [-1] * n_events
    for f, p in enumerate(positions):
        slot[p] = f

    starts = _sessions(rng, n_events)
    day = date(2022, 1, 1) + timedelta(days=rng.randint(0, 500))
    pools = _fillers(cast)
    filler, speakers = V.FILLER, cast.speakers
    rand = rng.random
    events: list[Event] = []
    fact_event: list[int] = [0] * len(facts)
    for s, start in enumerate(starts):
        end = starts[s + 1] if s + 1 < len(starts) else n_events
        if s:
            day += timedelta(days=rng.randint(1, 6))
        prefix = f"{day.isoformat()}T"
        first_min = rng.randint(8 * 60, 11 * 60)
        n_turns = max(1, end - start)
        session = str(s + 1)
        for t in range(end - start):
            i = start + t
            minute = first_min + t * 600 // n_turns  # a session spans at most 10 hours of one day
            f = slot[i]
            if f >= 0:
                speaker, text = facts[f][0], facts[f][1]
                fact_event[f] = i
            else:
                tpl, kinds = filler[int(rand() * len(filler))]
                speaker = speakers[int(rand() * len(speakers))]
                args = [pools[k][int(rand() * len(pools[k]))] for k in kinds]
                if kinds[:1] == "n" and args[0] == speaker:  # nobody sends their own regards
                    args[0] = pools["n"][-1] if speaker != pools["n"][-1] else pools["n"][0]
                text = tpl.format(*args) if kinds else tpl
                if text[0].islower():
                    text = text[0].upper() + text[1:]
            events.append(Event(
                id=f"D{s + 1}:{t + 1}", session=session, time=f"{prefix}{minute // 60:02d}:{minute % 60:02d}",
                speaker=speaker, text=text, meta={}))
    ep_id = f"syn-{seed}-{index}"
    probes = _probes(rng, ep_id, cast, facts, fact_event, events, n_probes, interleave)
    return Episode(id=ep_id, events=events, probes=probes,
                                   meta={"seed": seed, "index": index, "speakers": cast.speakers,
                                         "sessions": len(starts), "fact_events": len(facts)})


def _probes(rng: random.Random, ep_id: str, cast: _Cast, facts: list[Fact], fact_event: list[int],
            events: list[Event], n_probes: int, interleave: float) -> list[Probe]:
    chains: dict[tuple[str, str], list[int]] = {}
    rels: dict[tuple[str, str], int] = {}
    acts: dict[tuple[str, str], list[int]] = {}
    for f, (_, _, tag) in enumerate(facts):
        if tag[0] == "chain":
            chains.setdefault((tag[1], tag[2]), []).append(f)
        elif tag[0] == "rel":
            rels[(tag[1], tag[2])] = f
        else:
            acts.setdefault((tag[1], events[fact_event[f]].time[:10]), []).append(f)
    for members in chains.values():
        members.sort(key=lambda f: fact_event[f])
    n = len(events)
    cands: dict[str, list[dict[str, Any]]] = {c: [] for c in CATEGORIES}
    for (subj, attr), members in chains.items():
        last = members[-1]
        if len(members) == 1:
            cands["single-hop"].append({"q": rng.choice(V.QUESTION[attr]).format(s=subj), "a": facts[last][2][3],
                                        "ev": [last]})
        else:
            cands["knowledge-update"].append({"q": rng.choice(V.QUESTION_NOW[attr]).format(s=subj),
                                              "a": facts[last][2][3], "ev": [last], "fixed": True})
    for (subj, word), f in rels.items():
        target = facts[f][2][3]
        for attr in ATTRS:
            members = chains.get((target, attr))
            if members and len(members) == 1:
                q = rng.choice(V.QUESTION[attr]).format(s=f"{subj}'s {word}")
                cands["multi-hop"].append({"q": q, "a": facts[members[0]][2][3], "ev": [f, members[0]]})
    for (who, day), members in acts.items():
        if len(members) == 1:
            d = day if rng.random() < 0.5 else _long_date(day)
            cands["temporal"].append({"q": rng.choice(V.QUESTION_TIME).format(s=who, d=d),
                                      "a": facts[members[0]][2][2], "ev": members, "fixed": True})
    stated = {s for s, _ in chains}
    for subj in cast.everyone:
        if subj not in stated:
            continue
        for attr in ATTRS:
            if (subj, attr) not in chains:
                cands["abstention"].append({"q": rng.choice(V.QUESTION[attr]).format(s=subj), "a": None, "ev": []})
    for subj in cast.speakers:
        for rel in V.RELATIONS:
            for word in dict.fromkeys(rel):
                if (subj, word) not in rels:
                    cands["abstention"].append({"q": f"What does {subj}'s {word} do for a living?", "a": None,
                                                "ev": []})
    probes: list[Probe] = []
    end_time = (date.fromisoformat(events[-1].time[:10]) + timedelta(days=1)).isoformat() + "T12:00" if n else None
    for c, cat in enumerate(CATEGORIES):
        quota = n_probes // len(CATEGORIES) + (1 if c < n_probes % len(CATEGORIES) else 0)
        pool = cands[cat]
        for cand in rng.sample(pool, min(quota, len(pool))):
            ev_idx = [fact_event[f] for f in cand["ev"]]
            position, when = None, end_time
            if ev_idx and not cand.get("fixed") and rng.random() < interleave:
                # Asked mid-stream, right after some later event: only facts already written count.
                position = rng.randint(max(ev_idx) + 1, n)
                when = events[position - 1].time
            probes.append(Probe(
                id=f"{ep_id}:q{len(probes)}", question=cand["q"], time=when, answer=cand["a"],
                evidence=[events[i].id for i in ev_idx], category=cat, abstention=cat == "abstention",
                position=position))
    return probes
