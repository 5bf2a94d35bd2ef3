"""Stage diagnosis of missed probes: each stage is produced by a harness that really fails there."""

from __future__ import annotations

import textwrap

from mstar.episodes import Episode, Event, Probe
from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.evolve.execution.diagnosis import diagnose
from mstar.harness.loader import from_source, load_program
from mstar.sandbox.inline import InlineBackend
from mstar.toolkit import Toolkit

FILLER = "we talked about the weather and the traffic on the long drive home yesterday"


def episode() -> Episode:
    events = [Event(id="e0", session="1", speaker="Ann", text="My sister Clara works as a glassblower in Murano")]
    events += [Event(id=f"e{i}", session="1", speaker="Bob", text=f"{FILLER} number {i}") for i in range(1, 40)]
    probes = [Probe(id="q1", question="What does Ann's sister Clara do for work?", answer="glassblower",
                    evidence=["e0"], category="single-hop")]
    return Episode(id="ep", events=events, probes=probes)


# Stores everything but the first event (and says so in dump), reads by recency.
FORGETFUL = textwrap.dedent('''
    """Drops the event e0 at write time."""
    INSTRUCTIONS = "use it"
    KNOBS = {}

    class Memory:
        def __init__(self, toolkit, knobs):
            self.tk, self.rows = toolkit, []

        def write(self, event):
            if event["id"] != "e0":
                self.rows.append({"text": event["text"], "sources": [event["id"]]})

        def read(self, query):
            out, used = [], 0
            for r in reversed(self.rows):
                n = self.tk.count_tokens(r["text"])
                if used + n > query["budget"]:
                    break
                used += n
                out.append(r)
            return {"context": "\\n".join(r["text"] for r in out), "items": out}

        def dump(self):
            return list(self.rows)
''')

# Stores everything, returns a fixed irrelevant item whatever the budget.
BLIND = FORGETFUL.replace('if event["id"] != "e0":\n            ', "").replace(
    "for r in reversed(self.rows):", "for r in self.rows[-1:]:")


def run(program, budget: int = 60, factor: int = 4):
    ep = episode()
    res = evaluate_episode(program, ep, InlineBackend(), Toolkit(), None,
                           EvalConfig(budget=budget, diagnose_factor=factor))
    return diagnose(ep, res, budget)


def test_not_stored_when_the_dump_lacks_the_evidence():
    [d] = run(from_source(FORGETFUL))
    assert d.stage == "not_stored" and d.recall == 0.0
    assert "glassblower" in d.evidence_texts[0] and d.answer == "glassblower"


def test_cut_by_budget_when_a_larger_budget_brings_the_evidence():
    # Recency keeps every turn but shows the newest first: the oldest turn only fits at 4x the budget.
    prog = load_program("recency")
    [d] = run(prog, budget=100, factor=20)
    assert d.stage == "cut_by_budget"
    assert d.context_excerpt and "glassblower" not in d.context_excerpt


def test_not_retrieved_when_stored_but_never_returned():
    [d] = run(from_source(BLIND))
    assert d.stage == "not_retrieved"


def test_without_a_wide_read_the_budget_cannot_be_blamed():
    [d] = run(load_program("recency"), budget=100, factor=0)
    assert d.stage == "not_retrieved"


def test_a_hit_is_not_diagnosed():
    assert run(load_program("bm25"), budget=200) == []
