"""``llm_crossover`` through the real LLM path: the run's ``Ledger`` over ``LiteLLMBackend`` (real litellm)
with recorded replies given as litellm's ``mock_response``. No real model is called in this file."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_op_llm_reflect import MODEL, RecordedReplies, block

from mstar.evolve.operators.base import OperatorContext, OperatorFailed, ParentView
from mstar.evolve.operators.llm_crossover import LLMCrossover
from mstar.evolve.store.ledger import Ledger
from mstar.evolve.store.run_store import RunStore
from mstar.harness.loader import from_source, load_program

BM25 = load_program("bm25").source
NEIGHBORS = load_program("bm25_neighbors").source


def parents() -> list[ParentView]:
    return [ParentView(id="a1", name="bm25", source=BM25, island=0, score=0.68, by_category={"single-hop": 0.8}),
            ParentView(id="b1", name="bm25_neighbors", source=NEIGHBORS, island=1, score=0.75,
                       by_category={"multi-hop": 0.7})]


def run(tmp_path, replies: list[str], **options: Any):
    backend = RecordedReplies(replies)
    store = RunStore(tmp_path)
    ctx = OperatorContext(rng=random.Random(1), seeds={}, llm=Ledger(store, backend, MODEL).fn("operator:llm_crossover"),
                          budget_tokens=512, options={"smoke_sandbox": "inline", **options})
    return LLMCrossover().propose(parents(), ctx), backend, store


def test_merged_full_program_is_a_valid_child_of_both_mock_llm(tmp_path):
    """Recorded reply (litellm mock_response): a whole merged program in a python fence."""
    merged = NEIGHBORS.replace('"show_time": {"type": "bool", "default": False}',
                               '"show_time": {"type": "bool", "default": True}')
    prop, backend, store = run(tmp_path, ["RATIONALE: neighbours of B with timestamps\n```python\n" + merged + "```"])
    assert prop.source == merged and prop.parents == ["a1", "b1"] and prop.operator == "llm_crossover"
    assert prop.note == "neighbours of B with timestamps" and prop.llm_calls == 1
    assert from_source(prop.source).knob_specs["show_time"].default is True
    user = backend.sent[0][1]["content"]
    assert BM25.strip() in user and NEIGHBORS.strip() in user  # both parents are shown
    assert "single-hop 0.800" in user and "multi-hop 0.700" in user and "score 0.680" in user
    assert store.conn.execute("SELECT purpose FROM llm_calls").fetchall() == [("operator:llm_crossover",)]


def test_edits_apply_to_parent_a_mock_llm(tmp_path):
    """Recorded reply: edit blocks are taken against program A."""
    reply = "RATIONALE: B's wider pool in A\n" + block(
        '    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},',
        '    "top_k": {"type": "int", "low": 1, "high": 200, "default": 90},')
    prop, _, _ = run(tmp_path, [reply])
    assert prop.source == BM25.replace('"default": 60}', '"default": 90}', 1)


def test_returning_a_parent_unchanged_is_no_change_mock_llm(tmp_path):
    """Recorded replies: parent B sent back verbatim, twice -> OperatorFailed('no_change')."""
    same_b = "RATIONALE: B is best\n```python\n" + NEIGHBORS + "```"
    with pytest.raises(OperatorFailed) as e:
        run(tmp_path, [same_b, same_b], llm_tries=2)
    assert e.value.reason == "no_change"


def test_broken_merge_then_fixed_merge_mock_llm(tmp_path):
    """Recorded replies: a merge importing ``socket`` is sent back as a contract error, then fixed."""
    bad = "RATIONALE: r\n```python\nimport socket\n" + NEIGHBORS + "```"
    good = "RATIONALE: r\n" + block("import socket\n", "") + block(
        '    "window": {"type": "int", "low": 0, "high": 5, "default": 1},',
        '    "window": {"type": "int", "low": 0, "high": 5, "default": 2},')
    prop, backend, _ = run(tmp_path, [bad, good])
    assert prop.llm_calls == 2 and "socket" not in prop.source
    assert prop.source == NEIGHBORS.replace('"high": 5, "default": 1}', '"high": 5, "default": 2}', 1)
    assert "contract" in backend.sent[1][-1]["content"] and "socket" in backend.sent[1][-1]["content"]


def test_one_parent_is_refused():
    ctx = OperatorContext(rng=random.Random(0), seeds={}, llm=lambda *a, **k: "", options={})
    with pytest.raises(OperatorFailed) as e:
        LLMCrossover().propose(parents()[:1], ctx)
    assert e.value.reason == "arity"
