"""The host broker: cache, ledger, budget, retries, parameter allow-list, embeddings.

Tests named ``*_mock_llm*`` never call a real model: they use litellm's ``mock_response`` or a stub
OpenAI-compatible HTTP server on 127.0.0.1 (``StubServer`` below).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mstar.broker import Broker, LLMCallError, LLMReply
from mstar.embedders import HashingEmbedder
from mstar.errors import BudgetExceeded, LLMUnavailable

MOCK = {"mock_response": "Miso"}


class StubServer:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 answering with a script of HTTP codes."""

    def __init__(self, codes: list[int]):
        self.codes = list(codes)
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                code = stub.codes.pop(0) if stub.codes else 200
                payload = {"error": {"message": "stub failure", "type": "server_error"}} if code != 200 else {
                    "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "stub answer"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_broker_mock_llm_cache_and_ledger(tmp_path):
    db = tmp_path / "llm.db"
    b = Broker("gpt-4o-mini", cache_path=db, run_id="r1", litellm_kwargs=MOCK)
    assert b.llm("What is the cat called?", purpose="harness", max_tokens=10) == "Miso"
    assert b.llm([{"role": "user", "content": "What is the cat called?"}], max_tokens=10) == "Miso"  # same request
    b.llm("What is the cat called?", max_tokens=11)  # other params: another request
    calls = b.calls()
    assert [c.cached for c in calls] == [False, True, False]
    assert calls[0].purpose == "harness" and calls[0].model == "gpt-4o-mini" and calls[0].cost > 0
    t = b.totals()
    assert t["calls"] == 3 and t["cached"] == 1 and t["cost_usd"] == pytest.approx(calls[0].cost + calls[2].cost)
    b.close()
    # The cache and the ledger persist: a resumed run answers from the cache and keeps its spending.
    again = Broker("gpt-4o-mini", cache_path=db, run_id="r1", litellm_kwargs={"mock_response": "other"})
    assert again.llm("What is the cat called?", max_tokens=10) == "Miso"
    assert again.spent == pytest.approx(t["cost_usd"])


def test_broker_mock_llm_budget_refuses_the_crossing_call():
    b = Broker("gpt-4o-mini", budget_usd=0.001, litellm_kwargs=MOCK)
    b.llm("hello", max_tokens=10)  # small enough
    assert not b.exhausted and 0 < b.spent < 0.001
    with pytest.raises(BudgetExceeded, match="could use"):
        # An operator's call, capped at 4,096 completion tokens: its worst case > what is left
        b.llm("hello again", purpose="operator:llm_reflect", max_tokens=100_000)
    assert [c.cached for c in b.calls()] == [False] and b.exhausted
    with pytest.raises(BudgetExceeded, match="no further calls"):
        b.llm("a small one", max_tokens=1)  # the budget is over: the run stops asking
    assert len(b.calls()) == 1 and b.spent < 0.001


def test_broker_budget_holds_calls_in_flight_scripted_model():
    """Concurrent calls (the Ray broker actor serves several workers at once) cannot cross the budget
    together: each holds its estimate until its cost is recorded. The model is a scripted function."""
    started, release = threading.Event(), threading.Event()

    def slow_model(messages, **params):
        if messages[0]["content"] == "first":
            started.set()
            release.wait(10)
        return LLMReply(text="ok", prompt_tokens=1, completion_tokens=1, cost=0.3)

    b = Broker("scripted", backend=slow_model, budget_usd=0.7)
    b.max_call = 0.4  # as if a call of this run had cost 0.4: the next ones are assumed to cost as much
    t = threading.Thread(target=b.llm, args=("first",))
    t.start()
    assert started.wait(10)
    with pytest.raises(BudgetExceeded, match="in flight"):
        b.llm("second")  # 0.4 held + 0.4 > 0.7
    assert not b.exhausted  # refused for the call in flight only
    release.set()
    t.join(10)
    assert b.spent == pytest.approx(0.3) and b.llm("third") == "ok"  # 0.3 + 0.4 <= 0.7
    with pytest.raises(BudgetExceeded, match="no further calls"):
        b.llm("fourth")  # 0.6 + 0.4 > 0.7
    assert b.exhausted and b.spent == pytest.approx(0.6)


def test_broker_no_model_is_unavailable_and_params_are_allow_listed():
    with pytest.raises(LLMUnavailable):
        Broker().llm("hi")
    b = Broker("gpt-4o-mini", litellm_kwargs=MOCK)
    for bad in ({"api_base": "http://evil.example"}, {"model": "gpt-4-32k"}, {"api_key": "x"}):
        with pytest.raises(ValueError, match="not allowed"):
            b.llm("hi", **bad)


def test_broker_mock_llm_retries_transient_errors():
    with StubServer([500, 200]) as stub:
        b = Broker("openai/stub", api_base=stub.url, backoff_s=0.01, litellm_kwargs={"api_key": "sk-stub"})
        assert b.llm("hi", max_tokens=5) == "stub answer"
        assert len(stub.requests) == 2  # one failure, one retry
        assert b.calls()[0].prompt_tokens == 7 and b.calls()[0].cost == 0.0  # a local model: free
    with StubServer([503, 503, 503, 503]) as stub:
        b = Broker("openai/stub", api_base=stub.url, max_retries=2, backoff_s=0.01, litellm_kwargs={"api_key": "sk-stub"})
        with pytest.raises(LLMCallError, match="after 3 attempts"):
            b.llm("hi")
        assert len(stub.requests) == 3  # bounded: 1 + max_retries
    with StubServer([401]) as stub:
        b = Broker("openai/stub", api_base=stub.url, backoff_s=0.01, litellm_kwargs={"api_key": "sk-stub"})
        with pytest.raises(LLMCallError):
            b.llm("hi")
        assert len(stub.requests) == 1  # an auth error is not retried


def test_broker_mock_llm_embeddings():
    local = Broker(embedder=HashingEmbedder())
    vecs = local.embed(["a cat", "a dog"])
    assert len(vecs) == 2 and len(vecs[0]) == 256  # the host's embedder, not a litellm call
    remote = Broker(embed_model="text-embedding-3-small", litellm_kwargs={"mock_response": [0.5, 0.25]})
    assert remote.embed(["a cat"]) == [[0.5, 0.25]]
    assert remote.embed(["a cat"]) == [[0.5, 0.25]]
    assert [c.cached for c in remote.calls()] == [False, True]


def test_broker_toolkit():
    tk = Broker().toolkit()
    assert not tk.has_llm
    tk = Broker("gpt-4o-mini", litellm_kwargs=MOCK, embedder=HashingEmbedder()).toolkit()
    assert tk.has_llm and tk.llm("q") == "Miso" and len(tk.embed(["x"])[0]) == 256
