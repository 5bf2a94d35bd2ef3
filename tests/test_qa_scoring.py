"""LLM-mode scoring: the answer step, token F1 and the judge.

The LLM is never real here: ``*_stub_llm`` tests go through the real broker and real litellm to a stub
OpenAI-compatible server on 127.0.0.1 (tests/llm_stub.py) that answers from a script.
"""

from __future__ import annotations

import pytest
from llm_stub import StubServer

from mstar.broker import Broker
from mstar.episodes import Episode, Event, Probe
from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.evolve.execution.diagnosis import diagnose
from mstar.harness.loader import load_program
from mstar.sandbox.inline import InlineBackend
from mstar.scoring.aggregate import summarize
from mstar.scoring.qa import judge_messages, parse_verdict, token_f1


def test_token_f1_normalises_case_punctuation_and_articles():
    assert token_f1("The Glassblower.", "glassblower") == 1.0
    assert token_f1("a potter", "glassblower") == 0.0
    assert token_f1("she is a glassblower in Murano", "glassblower in Murano") == pytest.approx(0.75)
    assert token_f1("", "x") == 0.0


def test_verdicts_and_category_rules():
    assert parse_verdict("Yes.") == 1.0 and parse_verdict("no") == 0.0 and parse_verdict("maybe") is None
    t = Probe(id="q", question="When?", answer="8 May 2023", category="temporal")
    assert "one day" in judge_messages(t, "7 May")[1]["content"]
    a = Probe(id="q", question="Pet?", category="abstention", abstention=True)
    assert "not available" in judge_messages(a, "I don't know")[1]["content"]


def episode() -> Episode:
    events = [Event(id="e0", session="1", speaker="Ann", text="My sister Clara works as a glassblower in Murano"),
              Event(id="e1", session="1", speaker="Bob", text="I adopted a grey cat called Miso last spring")]
    probes = [Probe(id="q1", question="What does Clara do for work?", answer="glassblower", evidence=["e0"]),
              Probe(id="q2", question="What is the name of Bob's cat?", answer="Miso", evidence=["e1"]),
              Probe(id="q3", question="What car does Ann drive?", category="abstention", abstention=True)]
    return Episode(id="ep", events=events, probes=probes)


def scripted(body) -> str:
    """The stub 'model': answers questions about Clara wrongly, Bob's cat rightly; judges by containment."""
    user = body["messages"][-1]["content"]
    if user.startswith("Question:"):  # the judge
        gold = user.split("Gold answer: ", 1)[1].split("\n", 1)[0].lower()
        resp = user.split("Response: ", 1)[1].split("\n", 1)[0].lower()
        return "yes" if gold in resp or ("not available" in user and "don't know" in resp) else "no"
    question = user.split("Question", 1)[1]
    if "Clara" in question:
        return "a potter"
    if "cat" in question:
        return "Miso"
    return "I don't know"


@pytest.fixture
def broker(tmp_path):
    server = StubServer(scripted)
    b = Broker("openai/stub", api_base=server.url, cache_path=tmp_path / "cache.db", run_id="t")
    yield b, server
    b.close()
    server.close()


def test_answer_step_and_judge_through_broker_and_litellm_stub_llm(broker):
    b, server = broker
    prog = load_program("bm25")
    ep = episode()
    res = evaluate_episode(prog, ep, InlineBackend(), b.toolkit(), None, EvalConfig(budget=200, qa="judge"))
    by_id = {p.probe_id: p for p in res.probes}
    assert by_id["q1"].evidence_recall == 1.0 and by_id["q1"].answer == "a potter"
    assert by_id["q1"].qa_f1 == 0.0 and by_id["q1"].qa_judge == 0.0
    assert by_id["q2"].qa_f1 == 1.0 and by_id["q2"].qa_judge == 1.0
    assert by_id["q3"].qa_f1 is None and by_id["q3"].qa_judge == 1.0  # abstention: judged, no F1
    # The harness's INSTRUCTIONS are the answer step's system message.
    first = server.requests[0]["messages"]
    assert first[0]["role"] == "system" and first[0]["content"] == prog.instructions != ""
    assert summarize([res])["overall"]["qa_judge"] == pytest.approx(2 / 3)
    # Retrieval was perfect, the answer was not: diagnosed as answered wrong.
    [d] = diagnose(ep, res, 200)
    assert d.probe_id == "q1" and d.stage == "answered_wrong" and "glassblower" in d.context_excerpt
    # A second evaluation is served by the broker's cache: no new request reaches the server.
    n = len(server.requests)
    evaluate_episode(prog, ep, InlineBackend(), b.toolkit(), None, EvalConfig(budget=200, qa="judge"))
    assert len(server.requests) == n


def test_offline_toolkit_leaves_qa_metrics_empty():
    from mstar.toolkit import Toolkit

    res = evaluate_episode(load_program("bm25"), episode(), InlineBackend(), Toolkit(), None,
                           EvalConfig(budget=200, qa="judge"))
    assert all(p.qa_f1 is None and p.qa_judge is None and p.answer is None for p in res.probes)


def test_mstar_eval_with_model_and_api_base_reports_answer_metrics_stub_llm(tmp_path):
    """`mstar eval --model --api-base` against the stub server: no key in the environment (a local
    server needs none), the answer metrics in the JSON, and nothing but JSON on stdout."""
    import json
    import os
    import subprocess
    import sys

    server = StubServer(lambda body: "yes" if body["messages"][-1]["content"].startswith("Question:") else "Lisbon")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "MSTAR_CACHE_DIR"}
    cmd = [sys.executable, "-m", "mstar.cli.main", "eval", "bm25", "--task", "synthetic", "--split", "test",
           "--limit", "1", "--sandbox", "inline", "--model", "openai/stub", "--api-base", server.url, "--json"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        asked = len(server.requests)
        # The same evaluation again is answered from the persistent cache (.mstar/llm-cache.db).
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    finally:
        server.close()
    quality = ("evidence_recall", "qa_f1", "qa_judge")
    assert again.returncode == 0, again.stderr[-2000:]
    assert [json.loads(again.stdout)["overall"][k] for k in quality] == [json.loads(out.stdout)["overall"][k]
                                                                          for k in quality]
    assert len(server.requests) == asked and (tmp_path / ".mstar" / "llm-cache.db").is_file()
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    assert res["overall"]["qa_judge"] == 1.0  # the stub's judge says yes to everything
    assert 0.0 <= res["overall"]["qa_f1"] < 1.0
    assert server.requests and all(r["model"] == "stub" for r in server.requests)
