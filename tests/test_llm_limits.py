"""Caps on every model call, a candidate's share of the run's budget, embed quotas per episode.

No real model: ``*_stub_server`` tests talk to the stub OpenAI-compatible server on 127.0.0.1
(tests/llm_stub.py), ``*_mock_llm`` tests use litellm's ``mock_response``, ``*_scripted`` tests give the
broker a plain function as its model.
"""

from __future__ import annotations

import pickle

import pytest
from llm_stub import StubServer
from test_sandbox_support import LABELS, LIMITS, assert_nothing_left, episode, make_backend, program

from mstar.broker import Broker, LLMReply
from mstar.embedders import HashingEmbedder
from mstar.errors import BudgetExceeded, CandidateFailure
from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.harness.loader import load_program
from mstar.llm_limits import LLMLimits, parse_max_tokens
from mstar.toolkit import Toolkit

MOCK = {"mock_response": "Miso"}


class Scripted:
    """A model as a function: answers ``text``, reports ``usage`` tokens, records the parameters."""

    def __init__(self, text: str = "ok", prompt_tokens: int = 10, completion_tokens: int = 10, cost: float = 0.0):
        self.text, self.pt, self.ct, self.cost = text, prompt_tokens, completion_tokens, cost
        self.params: list[dict] = []

    def __call__(self, messages, **params):
        self.params.append(params)
        return LLMReply(text=self.text, prompt_tokens=self.pt, completion_tokens=self.ct, cost=self.cost)


def test_every_purpose_gets_its_cap_scripted():
    model = Scripted()
    b = Broker("m", backend=model)
    b.ask("a", "harness", {"max_tokens": 10**9})
    b.ask("b", "harness", {})  # no max_tokens at all: capped too (a weak model loops otherwise)
    b.ask("c", "operator:llm_reflect", {})
    b.ask("d", "answer", {"max_tokens": 10_000})
    b.ask("e", "judge", {"max_tokens": 5})  # under the cap: kept
    b.ask("f", "operator", {"max_completion_tokens": 10**9})
    assert [p["max_tokens"] for p in model.params] == [512, 512, 4096, 64, 5, 4096]
    assert all("max_completion_tokens" not in p for p in model.params)


def test_more_than_one_completion_is_refused_scripted():
    b = Broker("m", backend=Scripted())
    for purpose in ("harness", "operator"):
        with pytest.raises(ValueError, match="n=3|n not allowed"):
            b.ask("x", purpose, {"n": 3})


def test_harness_prompt_size_is_capped_scripted():
    b = Broker("m", backend=Scripted(), limits=LLMLimits(harness_prompt_chars=1000))
    with pytest.raises(ValueError, match="over the run's cap"):
        b.ask("x" * 2000, "harness", {})
    b.ask("x" * 2000, "operator", {})  # the host's own callers are not held to the harness's cap


def test_harness_cannot_set_its_purpose_or_candidate_scripted():
    """The purpose and candidate come from the host, never from a harness's keywords."""
    b = Broker("m", backend=Scripted())
    fn = b.fn("harness", "prog-a")
    with pytest.raises(ValueError, match="not allowed"):
        fn("x", purpose="operator")
    with pytest.raises(ValueError, match="not allowed"):
        fn("x", candidate="someone-else")


def test_max_tokens_1e9_is_capped_not_a_budget_exhaustion_mock_llm():
    """The red-team case: ``max_tokens=10**9`` once exhausted a $0.05 budget by its worst case alone."""
    b = Broker("gpt-4o-mini", budget_usd=0.05, litellm_kwargs=MOCK)
    assert b.ask("hello", "harness", {"max_tokens": 10**9}, candidate="p1") == "Miso"
    assert not b.exhausted


def test_max_tokens_reaches_the_server_capped_stub_server():
    server = StubServer(lambda body: "fine")
    try:
        b = Broker("openai/stub", api_base=server.url, budget_tokens=100_000)
        tk = b.toolkit().scoped("prog-1")
        tk.llm("hello", max_tokens=10**9)
        tk.scorer("answer")([{"role": "user", "content": "q"}], max_tokens=1000)
        tk.scorer("judge")([{"role": "user", "content": "q"}])
        assert [r["max_tokens"] for r in server.requests] == [512, 64, 8]
        recs = b.calls()
        assert [(r.purpose, r.program) for r in recs] == [("harness", "prog-1"), ("answer", ""), ("judge", "")]
        assert all(r.ms > 0 for r in recs) and not b.exhausted
    finally:
        server.close()


def test_a_candidate_cannot_spend_the_run_token_budget_scripted():
    model = Scripted(prompt_tokens=400, completion_tokens=400)
    b = Broker("m", backend=model, budget_tokens=20_000)  # share 0.25 -> 5,000 tokens a candidate
    with pytest.raises(CandidateFailure) as ei:
        for i in range(100):
            b.ask(f"x{i}", "harness", {}, candidate="greedy")  # distinct prompts: no cache hits
    assert ei.value.reason == "llm_budget" and "share" in ei.value.detail
    assert len(model.params) <= 8 and not b.exhausted  # at most ~5,000 tokens of 20,000 were used
    b.ask("x", "harness", {}, candidate="modest")  # another candidate still has its own share
    b.ask("x", "operator", {})  # and the run its budget


def test_a_candidate_cannot_spend_the_run_usd_budget_scripted():
    b = Broker("m", backend=Scripted(cost=0.01), budget_usd=1.0)
    with pytest.raises(CandidateFailure, match="USD budget"):
        for i in range(100):
            b.ask(f"x{i}", "harness", {}, candidate="greedy")
    assert 0.2 <= b.spent <= 0.26 and not b.exhausted


def test_token_budget_binds_for_a_free_model_scripted():
    """A local model costs $0: the token budget is the one that stops the run."""
    b = Broker("m", backend=Scripted(prompt_tokens=1000, completion_tokens=1000), budget_tokens=7000)
    b.ask("a", "operator", {})
    b.ask("b", "answer", {})  # 64 completion tokens at most: fits
    with pytest.raises(BudgetExceeded, match="tokens"):
        b.ask("c", "operator", {})  # 4,000 + a capped worst case of 4,096 + prompt > 7,000: refused
    assert b.exhausted and b.spent == 0.0 and b.tokens == 4000


def test_candidate_failure_survives_pickling():
    """The Ray broker actor raises it in another process: reason and detail must arrive intact."""
    e = pickle.loads(pickle.dumps(CandidateFailure("llm_budget", "share spent")))
    assert (e.reason, e.detail) == ("llm_budget", "share spent")


def test_embed_quota_is_per_episode_and_sticky():
    tk = Toolkit(limits=LLMLimits(embed_calls_per_episode=3, embed_chars_per_episode=100)).scoped("p")
    for _ in range(3):
        tk.embed(["hi"])
    with pytest.raises(CandidateFailure, match="embed calls"):
        tk.embed(["hi"])
    with pytest.raises(CandidateFailure):  # caught by the harness or not, the candidate has failed
        tk.embed(["hi"])
    tk2 = Toolkit(limits=LLMLimits(embed_chars_per_episode=100)).scoped("p")
    with pytest.raises(CandidateFailure, match="characters"):
        tk2.embed(["x" * 101])


def test_parse_max_tokens_flag():
    lim = parse_max_tokens("harness=256, operator=2048")
    assert lim.cap("harness") == 256 and lim.cap("operator:llm_reflect") == 2048 and lim.cap("judge") == 8
    for bad in ("harnes=3", "judge=0", "answer=many", "judge"):
        with pytest.raises(ValueError, match=bad.split("=")[0]):
            parse_max_tokens(bad)


# --- hostile harnesses in the process sandbox --------------------------------------------------------
@pytest.fixture
def process_backend():
    b = make_backend("process", warm=False)
    yield b
    assert_nothing_left(b)


@pytest.mark.timeout(120)
def test_hostile_max_tokens_flood_fails_the_candidate_not_the_run_scripted(process_backend):
    """A harness asking max_tokens=10**9 over and over, swallowing every error: it gets the cap, then
    its share runs out and it fails with ``llm_budget``; the run's budget is intact and the next
    candidate is served."""
    model = Scripted(prompt_tokens=300, completion_tokens=500)
    b = Broker("m", backend=model, budget_tokens=40_000)
    prog = program("llm_max_tokens", {"calls": 5})
    res = evaluate_episode(prog, episode(), process_backend, b.toolkit(), None,
                           EvalConfig(limits=LIMITS, collect_dump=False), LABELS)
    assert res.failure is not None and res.failure[0] == "llm_budget", res.failure
    assert all(p["max_tokens"] == 512 for p in model.params)
    assert not b.exhausted and b.tokens <= 0.25 * 40_000
    good = evaluate_episode(load_program("bm25"), episode(), process_backend, b.toolkit(), None,
                            EvalConfig(limits=LIMITS, collect_dump=False), LABELS)
    assert good.failure is None


@pytest.mark.timeout(120)
def test_hostile_embed_flood_fails_with_embed_quota(process_backend):
    tk = Toolkit(limits=LLMLimits(embed_calls_per_episode=50))
    res = evaluate_episode(program("embed_flood", {"calls": 100_000}), episode(), process_backend, tk, None,
                           EvalConfig(limits=LIMITS, collect_dump=False), LABELS)
    assert res.failure is not None and res.failure[0] == "embed_quota", res.failure


@pytest.mark.timeout(120)
def test_host_time_on_embeds_counts_against_the_deadline(process_backend):
    """Huge embeds within the quota: the host's embedding time is the candidate's, so the read's 4 s
    deadline ends it (it used to be added back, and a 3 s read ran 15 s of host CPU)."""
    tk = Toolkit(limits=LLMLimits(embed_calls_per_episode=10**6, embed_chars_per_episode=10**12))
    res = evaluate_episode(program("embed_flood", {"calls": 10**6, "repeat": 2000}), episode(), process_backend,
                           tk, None, EvalConfig(limits=LIMITS, collect_dump=False), LABELS)
    assert res.failure is not None and res.failure[0] == "timeout", res.failure
    assert res.wall_s < 20


@pytest.mark.parametrize("seed", ["amem", "generative_agents", "hipporag", "longmemeval_rag", "session_hierarchy"])
def test_model_does_not_turn_offline_seeds_into_llm_users_scripted(seed):
    """--model used to make these five call the model per event (llm_* knobs defaulted to on)."""
    from mstar.sandbox.inline import InlineBackend

    model = Scripted()
    b = Broker("m", backend=model, embedder=HashingEmbedder())
    prog = load_program(seed)
    assert not prog.needs_llm
    res = evaluate_episode(prog, episode(), InlineBackend(), b.toolkit(), None, EvalConfig(collect_dump=False))
    assert res.failure is None and model.params == []


@pytest.mark.parametrize("seed,knobs", [("mem0", None), ("mem_alpha", None), ("hipporag", {"llm_openie": True}),
                                        ("longmemeval_rag", {"fact_keys": True}), ("amem", {"llm_notes": True}),
                                        ("generative_agents", {"llm_importance": True}),
                                        ("session_hierarchy", {"llm_summary": True})])
def test_seeds_survive_a_model_that_fails_scripted(seed, knobs, process_backend):
    """Every call fails for good (toolkit.LLMError in the sandbox): each seed falls back, none crashes."""
    from mstar.broker import LLMCallError

    def down(messages, **params):
        raise LLMCallError("scripted: APIConnectionError: connection refused")

    b = Broker("m", backend=down, embedder=HashingEmbedder())  # not the MiniLM model: keep it fast
    # Roomier deadlines than LIMITS: the fallbacks embed what the model would have condensed, and host
    # embed time is the candidate's (a shared, loaded machine must not turn that into a timeout here).
    roomy = LIMITS.model_copy(update={"call_timeout_s": 60.0, "episode_timeout_s": 300.0})
    res = evaluate_episode(load_program(seed), episode(), process_backend, b.toolkit(), knobs,
                           EvalConfig(limits=roomy, collect_dump=False), LABELS)
    assert res.failure is None, res.failure


@pytest.mark.parametrize("bad", ["judge=0", "critic=5", "answer=lots"])
def test_bad_max_tokens_flag_is_one_line_naming_it(tmp_path, bad):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "mstar.cli.main", "evolve", "--task", "synthetic", "--max-tokens", bad,
                        "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--max-tokens" in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # nothing was started
