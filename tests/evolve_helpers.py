"""Test doubles for the evolution engine: a tiny hand-made task and trivial operators.

The engine is tested apart from the real operators (written separately): ``jitter`` moves one knob
of its parent, which is enough to exercise selection, the cascade, novelty, islands and resume.
``scripted_llm`` is an LLM operator whose replies come from a scripted function (never a real model).
"""

from __future__ import annotations

import random
from typing import Any

from mstar.episodes import Episode, Event, Probe
from mstar.evolve.operators.base import OperatorContext, OperatorFailed, ParentView, Proposal
from mstar.evolve.store.run_store import freeze_knobs
from mstar.harness.knobs import parse_knobs

PEOPLE = ["Ana", "Ben", "Caro", "Dev", "Eli", "Fay"]
THINGS = ["bike", "kayak", "violin", "garden", "puppy", "camera", "novel", "tent", "piano", "scooter"]
PLACES = ["Lisbon", "Oslo", "Kyoto", "Lima", "Cairo", "Quebec", "Hanoi", "Perth"]
COLORS = ["red", "blue", "green", "amber", "violet", "silver"]
FILLER = ["The weather was nice today.", "I had a long day at work.", "Lunch was good.",
          "We watched a movie.", "Traffic was terrible.", "I slept badly last night."]


def make_episode(idx: int, sessions: int = 3, turns: int = 10, probes: int = 8) -> Episode:
    rng = random.Random(f"tiny:{idx}")
    events: list[Event] = []
    facts: list[tuple[str, str, str]] = []
    for s in range(1, sessions + 1):
        for t in range(1, turns + 1):
            who = rng.choice(PEOPLE[:2])
            if rng.random() < 0.5:
                thing, place, color = rng.choice(THINGS), rng.choice(PLACES), rng.choice(COLORS)
                text = f"I bought a {color} {thing} while travelling in {place}."
                facts.append((f"D{s}:{t}", who, f"{thing}:{place}:{color}"))
            else:
                text = rng.choice(FILLER)
            events.append(Event(id=f"D{s}:{t}", session=str(s), time=f"2024-01-{s:02d}T10:{t:02d}", speaker=who,
                                text=text))
    qs = []
    for q, (eid, who, fact) in enumerate(rng.sample(facts, min(probes, len(facts)))):
        thing, place, color = fact.split(":")
        qs.append(Probe(id=f"tiny{idx}:q{q}", question=f"Where did {who} buy the {thing}?", answer=place,
                        evidence=[eid], category=rng.choice(["single-hop", "temporal"])))
    return Episode(id=f"tiny-{idx}", events=events, probes=qs)


class TinyTask:
    name = "tiny"
    description = "hand-made test episodes"
    needs_data = False

    def __init__(self, data: Any = None, episodes: int = 7, **_: Any):
        self.all = [make_episode(i) for i in range(int(episodes))]

    def episodes(self, split: str = "all") -> list[Episode]:
        n = len(self.all)
        cut = {"train": self.all[: n - 2], "val": self.all[n - 2 : n - 1], "test": self.all[n - 1 :]}
        return list(self.all) if split == "all" else cut[split]


def _knobs_literal(source: str) -> dict[str, Any]:
    import ast

    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "KNOBS":
            return ast.literal_eval(node.value)
    return {}


class JitterOperator:
    """Moves one knob of the parent to a random value of its range; the child's KNOBS defaults change."""

    name = "jitter"
    needs_llm = False
    arity = 1

    def propose(self, parents: list[ParentView], ctx: OperatorContext) -> Proposal:
        parent = parents[0]
        specs = parse_knobs(_knobs_literal(parent.source))
        tunable = sorted(k for k, s in specs.items() if s.type in ("int", "float", "cat", "bool"))
        if not tunable:
            raise OperatorFailed("no_knobs", "the parent has no knobs")
        k = ctx.rng.choice(tunable)
        s = specs[k]
        if s.type == "int":
            v: Any = ctx.rng.randint(s.low, s.high)
        elif s.type == "float":
            v = round(ctx.rng.uniform(s.low, s.high), 3)
        elif s.type == "cat":
            v = ctx.rng.choice(s.choices)
        else:
            v = ctx.rng.random() < 0.5
        values = dict(parent.knobs)
        values[k] = v
        if ctx.options.get("jitter_sleep"):  # slows a run down so a test can kill it mid-generation
            import time

            time.sleep(float(ctx.options["jitter_sleep"]))
        if ctx.score_minibatch is not None and ctx.options.get("jitter_minibatch"):
            ctx.score_minibatch(parent.source, values)
        return Proposal(source=freeze_knobs(parent.source, values), knobs=None, operator=self.name,
                        parents=[parent.id], note=f"{k} -> {v}")


class ScriptedLLMOperator:
    """An LLM operator whose model is whatever ``ctx.llm`` is (in tests: a scripted backend)."""

    name = "scripted_llm"
    needs_llm = True
    arity = 1

    def propose(self, parents: list[ParentView], ctx: OperatorContext) -> Proposal:
        assert ctx.llm is not None
        reply = ctx.llm([{"role": "user", "content": f"improve {parents[0].id} #{ctx.rng.random()}"}])
        parent = parents[0]
        values = dict(parent.knobs)
        if "top_k" in values:
            values["top_k"] = max(1, min(200, int(values["top_k"]) + ctx.rng.randint(-20, 20)))
        return Proposal(source=freeze_knobs(parent.source, values), operator=self.name, parents=[parent.id],
                        note=reply[:100], llm_calls=1)


def register() -> None:
    """Make the doubles visible to the CLI (used by the subprocess entry point too)."""
    from mstar.evolve.operators.registry import OPERATORS
    from mstar.tasks import registry

    OPERATORS["jitter"] = JitterOperator
    OPERATORS["scripted_llm"] = ScriptedLLMOperator
    registry.TASKS["tiny"] = "evolve_helpers:TinyTask"
