"""synthetic: a built-in, seeded generator of multi-session conversations (no data file, no network).

Each episode is a group chat of a small cast over dated sessions a few days apart: facts about people
(job, city, pet, hobby, car), later updates of some of them, relations between people, things a
speaker did on the day of a session, and filler small talk in between. Probes, each with exact
evidence ids, come in five categories:

- ``single-hop`` -- one event states the fact (question paraphrased: "What does X do for a living?");
- ``multi-hop`` -- "What does Alice's sister do for a living?": one event says who the sister is,
  another (which never names Alice) what she does;
- ``temporal`` -- "What did Bob do on 2023-05-08?": the date is only in the event's ``time``, never in
  its text, so only time-aware retrieval finds it;
- ``knowledge-update`` -- the current value; the evidence is the latest update;
- ``abstention`` -- something never said (no evidence; left out of recall).

Some single- and multi-hop probes are asked mid-stream (``Probe.position``). Options (``--task-opt``):
``seed`` (0), ``episodes`` (12), ``events`` per episode (300), ``probes`` per episode (40),
``interleave`` (0.2, the share of single/multi-hop probes asked mid-stream). Episode ``i`` depends only
on (seed, i, events, probes, interleave), so the same options give identical episodes. Splits are by
episode, fixed by index in blocks of ten (6 train / 2 val / 2 test; one test episode from two on).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mstar.episodes import Episode
from mstar.errors import UsageError
from mstar.tasks.base import check_split
from mstar.tasks.synthetic_gen import CATEGORIES, generate_episode

# Split of episode i is _BLOCK[i % 10]: small suites still get a test (from 2) and a val (from 3) episode.
_BLOCK = ("train", "test", "val", "train", "train", "test", "train", "val", "train", "train")
MAX_TOTAL_EVENTS = 5_000_000

DEFAULTS: dict[str, Any] = {"seed": 0, "episodes": 12, "events": 300, "probes": 40, "interleave": 0.2}
_LIMITS = {"episodes": (1, 100_000), "events": (1, MAX_TOTAL_EVENTS), "probes": (0, 10_000)}


def _int_option(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"--task-opt {key}: expected an integer, got {value!r}")
    lo, hi = _LIMITS.get(key, (None, None))
    if lo is not None and not lo <= value <= hi:
        raise UsageError(f"--task-opt {key}: must be between {lo:,} and {hi:,}, got {value:,}")
    return value


def split_of(index: int) -> str:
    return _BLOCK[index % len(_BLOCK)]


class SyntheticTask:
    name = "synthetic"
    description = ("Built-in generator: multi-session chats with facts, updates, dated events and multi-hop links "
                   f"({', '.join(CATEGORIES)}); offline, seeded")
    needs_data = False
    data_hint = "none (generated; --task-opt seed=, episodes=, events=, probes=, interleave=)"

    def __init__(self, data: str | Path | None = None, **options: Any):
        if data not in (None, ""):
            raise UsageError("--data: task 'synthetic' generates its data and takes no data file")
        for key in options:
            if key not in DEFAULTS:
                raise UsageError(f"--task-opt {key}: unknown option for task 'synthetic' "
                                 f"(choose from {', '.join(DEFAULTS)})")
        opts = {**DEFAULTS, **options}
        self.seed = _int_option("seed", opts["seed"])
        self.n_episodes = _int_option("episodes", opts["episodes"])
        self.n_events = _int_option("events", opts["events"])
        self.n_probes = _int_option("probes", opts["probes"])
        il = opts["interleave"]
        if isinstance(il, bool) or not isinstance(il, int | float) or not 0 <= il <= 1:
            raise UsageError(f"--task-opt interleave: expected a number between 0 and 1, got {il!r}")
        self.interleave = float(il)
        if self.n_episodes * self.n_events > MAX_TOTAL_EVENTS:
            raise UsageError(f"--task-opt events: episodes x events = {self.n_episodes * self.n_events:,} "
                             f"exceeds {MAX_TOTAL_EVENTS:,} events in total")
        self._cache: dict[int, Episode] = {}

    def episode(self, index: int) -> Episode:
        if index not in self._cache:
            self._cache[index] = generate_episode(self.seed, index, self.n_events, self.n_probes, self.interleave)
        return self._cache[index]

    def episodes(self, split: str = "all") -> list[Episode]:
        check_split(split)
        return [self.episode(i) for i in range(self.n_episodes) if split == "all" or split_of(i) == split]
