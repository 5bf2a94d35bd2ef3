"""``llm_reflect`` through the real LLM path: the run's ``Ledger`` over ``LiteLLMBackend`` (real litellm)
with recorded replies given as litellm's ``mock_response``, or over a stub OpenAI-compatible HTTP server
on 127.0.0.1 reached through litellm's ``api_base``. No real model is called anywhere in this file."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from llm_stub import StubServer

from mstar.broker import LiteLLMBackend, LLMReply
from mstar.evolve.operators.base import FailedProbe, LineageEntry, OperatorContext, OperatorFailed, ParentView
from mstar.evolve.operators.llm_reflect import LLMReflect
from mstar.evolve.store.ledger import Ledger
from mstar.evolve.store.run_store import RunStore
from mstar.harness.loader import from_source, load_program

BM25 = load_program("bm25").source
RECENCY = load_program("recency").source
MODEL = "gpt-4o-mini"


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


GOOD = "RATIONALE: keep more candidates so fewer evidence turns are missed\n" + block(
    '    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},',
    '    "top_k": {"type": "int", "low": 1, "high": 200, "default": 120},')


class RecordedReplies(LiteLLMBackend):
    """The real litellm backend; each call is answered by the next recorded reply via ``mock_response``."""

    def __init__(self, replies: list[str]):
        super().__init__(MODEL)
        self.replies = list(replies)
        self.sent: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]], **kw: Any) -> LLMReply:
        self.sent.append([dict(m) for m in messages])
        return super().__call__(messages, mock_response=self.replies.pop(0), **kw)


def parent_view() -> ParentView:
    failures = [
        FailedProbe(probe_id="q1", episode_id="e1", category="multi-hop", question="Where did Ana buy the kayak?",
                    stage="not_retrieved", recall=0.0, evidence_texts=["Ana: I bought a red kayak in Oslo."],
                    context_excerpt="Ben: Traffic was terrible.", answer="Oslo"),
        FailedProbe(probe_id="q2", episode_id="e1", category="temporal", question="When did Ben adopt the puppy?",
                    stage="cut_by_budget", recall=0.5, evidence_texts=["Ben: we got a puppy yesterday"]),
    ]
    lineage = [LineageEntry(program_id="seedbm25aaaa", operator="seed", score=0.61, parent_score=None),
               LineageEntry(program_id="child0bbbbbb", operator="tune", score=0.55, parent_score=0.61,
                            note="k1 -> 2.9")]
    return ParentView(id="p1", name="bm25", source=BM25, score=0.61, by_category={"multi-hop": 0.4, "temporal": 0.7},
                      failures=failures, lineage=lineage)


def make_ctx(llm: Callable[..., str] | None, **options: Any) -> OperatorContext:
    ref = ParentView(id="r1", name="recency-best", source=RECENCY, score=0.7, by_category={"temporal": 0.9})
    return OperatorContext(rng=random.Random(0), seeds={}, llm=llm, reference=ref, budget_tokens=512,
                           options=options)


def ledger_llm(tmp_path, replies: list[str]):
    backend = RecordedReplies(replies)
    store = RunStore(tmp_path)
    return Ledger(store, backend, MODEL).fn("operator:llm_reflect"), backend, store


def test_good_patch_gives_a_valid_child_as_the_patch_says_mock_llm(tmp_path):
    """Recorded reply (litellm mock_response) through the ledger: one edit, checked in the process sandbox."""
    llm, backend, store = ledger_llm(tmp_path, [GOOD])
    prop = LLMReflect().propose([parent_view()], make_ctx(llm))
    assert prop.llm_calls == 1 and prop.parents == ["p1"] and prop.operator == "llm_reflect"
    assert prop.note == "keep more candidates so fewer evidence turns are missed"
    assert from_source(prop.source).knob_specs["top_k"].default == 120
    assert prop.source == BM25.replace('"default": 60}', '"default": 120}', 1)
    rows = store.conn.execute("SELECT purpose, model, cached FROM llm_calls").fetchall()
    assert rows == [("operator:llm_reflect", MODEL, 0)]


def test_prompt_carries_failures_stages_lineage_regression_and_reference_mock_llm(tmp_path):
    """Recorded reply: what the model is shown, read off the messages litellm was given."""
    llm, backend, _ = ledger_llm(tmp_path, [GOOD])
    LLMReflect().propose([parent_view()], make_ctx(llm, smoke_sandbox="inline"))
    system, user = backend.sent[0][0]["content"], backend.sent[0][1]["content"]
    assert "memory systems" in system
    assert "Where did Ana buy the kayak?" in user and "[not_retrieved]" in user and "[cut_by_budget]" in user
    assert "Ana: I bought a red kayak in Oslo." in user and "Traffic was terrible" in user
    assert "multi-hop 0.400" in user and "temporal 0.700" in user
    assert re.search(r"child0bbbbbb by tune: score 0\.550 \(parent 0\.610\) REGRESSION - k1 -> 2\.9", user)
    assert "seedbm25aaaa by seed: score 0.610 (parent n/a)\n" in user  # no mark on a non-regression
    assert "recency-best" in user and 'KNOBS = {\n    "window"' in user  # the reference program
    assert BM25.strip() in user and "<<<<<<< SEARCH" in user and "socket" in user  # source, format, contract


def test_malformed_patch_then_fix_succeeds_on_try_two_mock_llm(tmp_path):
    """Recorded replies: a SEARCH that matches nothing, then a corrected block after the error came back."""
    bad = "RATIONALE: raise top_k\n" + block('    "top_k": {"type": "int", "default": 60},', "oops")
    llm, backend, _ = ledger_llm(tmp_path, [bad, GOOD])
    prop = LLMReflect().propose([parent_view()], make_ctx(llm, smoke_sandbox="inline"))
    assert prop.llm_calls == 2 and from_source(prop.source).knob_specs["top_k"].default == 120
    fix = backend.sent[1]
    assert [m["role"] for m in fix] == ["system", "user", "assistant", "user"]
    assert fix[2]["content"] == bad  # the model sees what it wrote
    assert "patch_no_match" in fix[3]["content"] and "attempt 1 of 3" in fix[3]["content"]
    assert "closest line" in fix[3]["content"]


def test_patch_that_never_compiles_fails_after_three_tries_mock_llm(tmp_path):
    """Recorded replies: three syntax errors (two edits, the second against the broken child, then a full
    rewrite) -> OperatorFailed('syntax_error'), exactly three calls."""
    broken = "RATIONALE: r\n" + block("def terms(text):", "def terms(text:")
    still = "RATIONALE: r\n" + block("def terms(text:", "def terms(text:)")
    rewrite = "RATIONALE: r\n```python\n" + BM25.replace("def terms(text):", "def terms(text)") + "```\n"
    llm, backend, store = ledger_llm(tmp_path, [broken, still, rewrite])
    with pytest.raises(OperatorFailed) as e:
        LLMReflect().propose([parent_view()], make_ctx(llm, smoke_sandbox="inline"))
    assert e.value.reason == "syntax_error" and "after 3 tries" in e.value.detail
    # every try's reason is kept, not only the last one
    assert all(f"try {i}: syntax_error" in e.value.detail for i in (1, 2, 3))
    assert len(backend.sent) == 3 and store.llm_totals()[0] > 0
    # after a patch that applied, the next edits target the patched program, which is shown back
    assert "def terms(text:" in backend.sent[1][-1]["content"] and "syntax_error" in backend.sent[1][-1]["content"]


@pytest.mark.parametrize("edit, detail", [
    ("```python\n" + BM25.replace("    def read(self, query):", "    def lookup(self, query):") + "```", "read"),
    (block("import re", "import re\nimport socket"), "socket"),
])
def test_contract_breaking_patch_is_rejected_mock_llm(tmp_path, edit, detail):
    """Recorded replies: removing ``read`` or importing ``socket`` is a contract failure, every try."""
    llm, backend, _ = ledger_llm(tmp_path, ["RATIONALE: r\n" + edit] * 3)
    with pytest.raises(OperatorFailed) as e:
        LLMReflect().propose([parent_view()], make_ctx(llm, smoke_sandbox="inline"))
    assert e.value.reason == "contract" and detail in e.value.detail
    assert len(backend.sent) == 3


def test_child_that_crashes_in_the_smoke_run_is_rejected_mock_llm(tmp_path):
    """Recorded replies: a valid-looking child whose read() raises fails the process-sandbox smoke run."""
    crash = "RATIONALE: r\n" + block("        if self.dirty:", "        raise KeyError('boom')\n        if self.dirty:")
    llm, backend, _ = ledger_llm(tmp_path, [crash, crash])
    with pytest.raises(OperatorFailed) as e:
        LLMReflect().propose([parent_view()], make_ctx(llm, llm_tries=2))
    assert e.value.reason == "smoke" and "KeyError" in e.value.detail and len(backend.sent) == 2


def test_identical_child_and_prose_reply_are_failures_mock_llm(tmp_path):
    """Recorded replies: a no-op edit (no_change), then prose with no program (patch_empty)."""
    noop = "RATIONALE: nothing\n" + block("import re", "import re")
    llm, backend, _ = ledger_llm(tmp_path, [noop, "I would use a better retriever."])
    with pytest.raises(OperatorFailed) as e:
        LLMReflect().propose([parent_view()], make_ctx(llm, llm_tries=2, smoke_sandbox="inline"))
    assert e.value.reason == "patch_empty"
    assert "no_change" in backend.sent[1][-1]["content"]


def test_without_a_model_the_operator_refuses():
    with pytest.raises(OperatorFailed) as e:
        LLMReflect().propose([parent_view()], make_ctx(None))
    assert e.value.reason == "no_llm"


# --- a stub OpenAI-compatible server (tests/llm_stub.py), reached through litellm's api_base -------------
def flip_show_time(body: dict[str, Any]) -> str:
    """The stub's 'model': flip the ``show_time`` knob default of whatever program it was shown."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    program = user.split("## The current program", 1)[1].split("## Score by question category", 1)[0]
    line = next(x for x in program.splitlines() if "show_time" in x and "default" in x)
    new = line.replace("True", "@").replace("False", "True").replace("@", "False")
    return f"RATIONALE: flip show_time\n{block(line, new)}"


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stub")  # litellm's OpenAI client insists on a key, even locally
    server = StubServer(flip_show_time)
    yield server
    server.close()


def test_end_to_end_over_a_stub_server_via_api_base_stub_llm(tmp_path, stub):
    """Stub OpenAI-compatible server on 127.0.0.1 behind litellm's api_base, through the ledger."""
    store = RunStore(tmp_path)
    ledger = Ledger(store, LiteLLMBackend("openai/stub-model", stub.url), "openai/stub-model")
    ctx = make_ctx(ledger.fn("operator:llm_reflect"), smoke_sandbox="inline")
    prop = LLMReflect().propose([parent_view()], ctx)
    assert prop.note == "flip show_time" and prop.llm_calls == 1
    assert from_source(prop.source).knob_specs["show_time"].default is True
    assert stub.requests[0]["path"] == "/v1/chat/completions"
    assert "[not_retrieved]" in stub.requests[0]["messages"][1]["content"]
    assert store.llm_totals()[0] == 120


def test_engine_generation_with_llm_reflect_over_the_stub_server_stub_llm(tmp_path, stub):
    """One generation of the real Engine with --model/--api-base pointing at the stub server: llm_reflect
    children are proposed, evaluated and stored, and the model calls land in the llm_calls table."""
    from evolve_helpers import TinyTask

    from mstar.evolve.core.config import EvolveConfig, StopConfig
    from mstar.evolve.core.engine import Engine

    cfg = EvolveConfig(run_id="llm", task="tiny", budget=20, seeds=["bm25", "recency"],
                       operators={"llm_reflect": 1.0}, operator_options={"smoke_sandbox": "inline"},
                       children_per_gen=2, islands=2, island_size=4, final_k=1, model="openai/stub-model",
                       api_base=stub.url, stops=StopConfig(generations=1))
    out = Engine(cfg, tmp_path / "llm", operators={"llm_reflect": LLMReflect()}, suite=TinyTask()).run()
    store = RunStore(tmp_path / "llm")
    props = store.proposals()
    assert [p.operator for p in props] == ["llm_reflect", "llm_reflect"]
    # Both slots may draw the same parent; the stub then writes the same child and novelty drops the second.
    outcomes = [p.outcome for p in props]
    assert set(outcomes) <= {"accepted", "rejected-cascade", "rejected-novelty"}, [(p.outcome, p.reason) for p in props]
    children = [p for p in store.programs() if p.operator == "llm_reflect"]
    assert len(children) == 2 - outcomes.count("rejected-novelty") >= 1
    assert all(c.note == "flip show_time" and c.parents for c in children)
    screened = {r[0] for r in store.conn.execute("SELECT DISTINCT program FROM evaluations").fetchall()}
    assert {c.id for c in children} <= screened  # every admitted child was evaluated (at least the screen)
    rows = store.conn.execute("SELECT purpose, model, tokens, cached FROM llm_calls").fetchall()
    assert rows == [("operator:llm_reflect", "openai/stub-model", 120, 0)] * 2
    assert len(stub.requests) == 2 and out["usd"] == 0
