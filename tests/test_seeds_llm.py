"""The LLM seeds ``mem0`` and ``mem_alpha``, driven through their real logic with scripted model replies.

No model is reachable here and none is faked inside a harness: every test named ``*_mocked_llm*`` or
``*_stub_llm*`` answers ``toolkit.llm`` with recorded replies, either through real litellm with
``mock_response`` (``scripted``) or through the host broker talking to a stub OpenAI-compatible server
on 127.0.0.1 (``StubServer``). A reply may be a string or a function of the prompt (a reply recorded
for that request, e.g. naming the id the prompt showed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mstar.harness.knobs import resolve
from mstar.harness.loader import load_module, load_program
from mstar.toolkit import Toolkit

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def scripted(replies, prompts):
    """A ``toolkit.llm`` that answers each call with the next scripted reply, through real litellm."""
    import litellm

    queue = list(replies)

    def llm(messages, **kw):
        prompt = messages[-1]["content"]
        prompts.append(prompt)
        reply = queue.pop(0)
        reply = reply(prompt) if callable(reply) else reply
        resp = litellm.completion(model="openai/x", messages=messages, mock_response=reply)
        return resp.choices[0].message.content

    return llm


def harness(name, replies, prompts, **knobs):
    program = load_program(name)
    module = load_module(program.source, program.path, name)
    toolkit = Toolkit(llm=scripted(replies, prompts), log=lambda m: None)
    return module.Memory(toolkit, resolve(program.knob_specs, knobs)), toolkit


def ev(i, text, speaker="Ana", session="1", time="2024-03-01T10:00"):
    return {"id": f"D{session}:{i}", "session": session, "time": time, "speaker": speaker, "text": text, "meta": {}}


def facts(*fs):
    return json.dumps({"facts": list(fs)})


def op(operation, id=None, text=None):  # noqa: A002 - mirrors the reply's field
    return json.dumps({"operation": operation, "id": id, "text": text})


def shown_id(needle):
    """A recorded decision reply that names the id under which the prompt showed a fact containing ``needle``."""
    def pick(prompt):
        line = next(ln for ln in prompt.splitlines() if needle in ln and ln[:1].isdigit())
        return line.split(":", 1)[0]
    return pick


def test_mem0_update_and_delete_with_mocked_llm_replies():
    """Mocked LLM (litellm mock_response): ADD, UPDATE, DELETE and NOOP change the store as Mem0 says."""
    prompts = []
    replies = [
        facts("Ana lives in Porto"), op("ADD", text="Ana lives in Porto"),
        facts("Ana has a cat named Miso"), op("ADD", text="Ana has a cat named Miso"),
        facts("Ana lives in Lisbon"),
        lambda p: op("UPDATE", int(shown_id("Porto")(p)), "Ana lives in Lisbon, having moved from Porto"),
        facts("Ana no longer has a cat"), lambda p: op("DELETE", int(shown_id("Miso")(p))),
        facts("Ana lives in Lisbon"), op("NOOP"),
    ]
    mem, _ = harness("mem0", replies, prompts, batch_turns=1)
    mem.write(ev(1, "I live in Porto."))
    mem.write(ev(2, "I adopted a cat, her name is Miso.", time="2024-03-02T10:00"))
    assert sorted(r["text"] for r in mem.dump()) == ["Ana has a cat named Miso", "Ana lives in Porto"]

    mem.write(ev(3, "We moved to Lisbon last month!", session="2", time="2024-05-01T09:00"))
    assert "0: Ana lives in Porto" in prompts[5]  # the most similar fact was shown under a small id
    stored = {r["text"]: r["sources"] for r in mem.dump()}
    assert "Ana lives in Porto" not in stored
    assert stored["Ana lives in Lisbon, having moved from Porto"] == ["D1:1", "D2:3"]
    got = mem.read({"id": "q", "question": "Where does Ana live?", "time": "2024-05-02T00:00", "budget": 200})
    assert "Lisbon" in got["context"] and any("D2:3" in it["sources"] for it in got["items"])

    mem.write(ev(4, "Sadly Miso ran away, I have no cat now.", session="2", time="2024-05-01T09:05"))
    assert [r["text"] for r in mem.dump()] == ["Ana lives in Lisbon, having moved from Porto"]
    got = mem.read({"id": "q2", "question": "What is the name of Ana's cat?", "time": None, "budget": 200})
    assert "Miso" not in got["context"]

    before = mem.dump()
    mem.write(ev(5, "Lisbon is home now.", session="2", time="2024-05-01T09:06"))
    assert mem.dump() == before and len(prompts) == 10


def test_mem0_malformed_llm_replies_are_logged_not_fatal_with_mocked_llm():
    """Mocked LLM: prose instead of JSON, an unknown operation and an id that was never shown are skipped and logged."""
    prompts = []
    replies = [
        facts("Ben trains for the Lisbon marathon"), op("ADD", text="Ben trains for the Lisbon marathon"),
        "Sure! Nothing new here.",  # extraction without JSON
        facts("Ben runs daily"), '{"operation": "MERGE", "id": 0}',  # unknown operation
        facts("Ben ran the marathon"), op("UPDATE", 7, "Ben ran it"),  # id 7 was never shown
        facts("Ben likes tea"), "```json\n" + op("ADD", text="Ben likes tea") + "\n```",  # fenced: still read
    ]
    mem, toolkit = harness("mem0", replies, prompts, batch_turns=1)
    for i, text in enumerate(["I train for the Lisbon marathon.", "ok", "I run daily.", "Done!", "Tea please."]):
        mem.write(ev(i, text, speaker="Ben"))
    assert [r["text"] for r in mem.dump()] == ["Ben trains for the Lisbon marathon", "Ben likes tea"]
    logged = "\n".join(toolkit.logs)
    assert "extraction reply is not" in logged and "unknown operation" in logged and "names no shown fact id" in logged


def test_mem0_batches_turns_and_flushes_before_read_with_mocked_llm():
    """Mocked LLM: turns are extracted in batches of ``batch_turns``; a read first flushes the partial batch."""
    prompts = []
    mem, _ = harness("mem0", [facts("Ana plays cello"), op("ADD", text="Ana plays cello")], prompts, batch_turns=3)
    mem.write(ev(1, "I play the cello."))
    mem.write(ev(2, "Since I was six.", speaker="Ben"))
    assert prompts == []  # still buffering
    got = mem.read({"id": "q", "question": "What instrument does Ana play?", "time": None, "budget": 100})
    assert "NEW TURNS:\n[2024-03-01] Ana: I play the cello.\n[2024-03-01] Ben: Since I was six." in prompts[0]
    assert got["items"] == [{"text": "[2024-03-01] Ana plays cello", "sources": ["D1:1", "D1:2"]}]


def test_mem_alpha_operations_edit_the_right_store_with_mocked_llm_replies():
    """Mocked LLM: insert / update / delete land in core, episodic or semantic as named; delete removes."""
    prompts = []

    def second_chunk(prompt):
        ids = {store: ln.split(" ", 1)[0] for ln in prompt.splitlines() for store in ("episodic", "semantic")
               if f"({store}):" in ln}
        return json.dumps({"operations": [
            {"op": "update", "store": "semantic", "id": ids["semantic"], "text": "Ben ran the Lisbon marathon in 2024"},
            {"op": "delete", "store": "episodic", "id": ids["episodic"]},
            {"op": "insert", "store": "episodic", "text": "2024-04-02 Ana lost her cat Miso"}]})

    replies = [json.dumps({"operations": [
        {"op": "update", "store": "core", "text": "Ana is a nurse in Porto. Ben is her brother."},
        {"op": "insert", "store": "episodic", "text": "2024-03-01 Ana adopted a cat named Miso"},
        {"op": "insert", "store": "semantic", "text": "Ben trains for the Lisbon marathon"}]}), second_chunk]
    mem, _ = harness("mem_alpha", replies, prompts, chunk_turns=2)
    mem.write(ev(1, "I adopted a cat named Miso! I'm a nurse in Porto, you know."))
    mem.write(ev(2, "My brother Ben trains for the Lisbon marathon.", speaker="Ana"))
    by_store = {s: [r["text"] for r in mem.dump() if r["store"] == s] for s in ("core", "episodic", "semantic")}
    assert by_store == {"core": ["CORE: Ana is a nurse in Porto. Ben is her brother."],
                        "episodic": ["2024-03-01 Ana adopted a cat named Miso"],
                        "semantic": ["Ben trains for the Lisbon marathon"]}

    mem.write(ev(1, "Ben ran the Lisbon marathon. Miso the cat got lost.", session="2", time="2024-04-02T10:00"))
    mem.manage("session_end")  # flushes the partial chunk
    assert "CORE:\nAna is a nurse in Porto" in prompts[1] and "Miso" in prompts[1].split("RELATED ENTRIES:")[1]
    dump = mem.dump()
    semantic = [r for r in dump if r["store"] == "semantic"]
    assert [(r["text"], r["sources"]) for r in semantic] == [("Ben ran the Lisbon marathon in 2024", ["D1:1", "D1:2", "D2:1"])]
    assert [r["text"] for r in dump if r["store"] == "episodic"] == ["2024-04-02 Ana lost her cat Miso"]
    got = mem.read({"id": "q", "question": "Did Ben run the Lisbon marathon?", "time": None, "budget": 100})
    assert got["context"].startswith("CORE: Ana is a nurse in Porto")
    assert "(semantic) Ben ran the Lisbon marathon in 2024" in got["context"]
    assert "adopted" not in got["context"]


def test_mem_alpha_bad_operations_are_skipped_and_core_stays_short_with_mocked_llm():
    """Mocked LLM: unknown store/op, a missing id and a non-JSON reply are logged; the core is clipped to its budget."""
    prompts = []
    replies = [json.dumps({"operations": [
        {"op": "insert", "store": "procedural", "text": "how to bake"}, {"op": "merge", "store": "semantic"},
        {"op": "delete", "store": "semantic", "id": "s99"}, "not an object",
        {"op": "update", "store": "core", "text": "word " * 300}]}), "I cannot do that."]
    mem, toolkit = harness("mem_alpha", replies, prompts, chunk_turns=1, core_max_tokens=20)
    mem.write(ev(1, "Let me tell you how to bake bread."))
    mem.write(ev(2, "And more."))
    dump = mem.dump()
    assert [r["store"] for r in dump] == ["core"] and toolkit.count_tokens(dump[0]["text"]) <= 22
    logged = "\n".join(toolkit.logs)
    for fragment in ("unknown operation 'insert' on store 'procedural'", "unknown operation 'merge'",
                     "no semantic entry 's99'", "not an object", "no operations list"):
        assert fragment in logged


class StubServer:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that answers each request with ``answer(prompt)``."""

    def __init__(self, answer):
        self.requests = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                payload = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop", "message": {
                               "role": "assistant", "content": answer(body["messages"][-1]["content"])}}],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def recorded_mem0_reply(prompt):
    """The stub's recorded replies: extraction restates each new turn as a fact; every decision is ADD."""
    if "NEW TURNS:" in prompt:
        lines = prompt.split("NEW TURNS:\n", 1)[1].splitlines()
        return json.dumps({"facts": [ln.split("] ", 1)[-1] for ln in lines if ln.strip()]})
    return op("ADD")


def test_mem0_end_to_end_through_the_broker_and_a_stub_llm_server():
    """Stub LLM server on 127.0.0.1 behind the real broker and litellm: mem0 is evaluated and scored like any seed."""
    from mstar.broker import Broker
    from mstar.episodes import Episode, Event, Probe
    from mstar.evaluate import EvalConfig, evaluate_episode
    from mstar.sandbox.inline import InlineBackend

    events = [Event(id="D1:1", session="1", time="2024-03-01T10:00", speaker="Ana", text="I adopted a grey cat called Miso."),
              Event(id="D1:2", session="1", time="2024-03-01T10:01", speaker="Ben", text="I am training for the Lisbon marathon."),
              Event(id="D2:1", session="2", time="2024-03-08T18:30", speaker="Ana", text="Miso knocked my plant over again.")]
    probe = Probe(id="p1", question="What is the name of Ana's grey cat?", answer="Miso", evidence=["D1:1"])
    stub = StubServer(recorded_mem0_reply)
    try:
        broker = Broker("openai/stub", api_base=stub.url, litellm_kwargs={"api_key": "sk-stub"})
        result = evaluate_episode(load_program("mem0"), Episode(id="e", events=events, probes=[probe]),
                                  InlineBackend(), broker.toolkit(), config=EvalConfig(budget=200))
    finally:
        stub.close()
    assert result.failure is None
    assert result.probes[0].evidence_recall == 1.0 and result.probes[0].credited == ["D1:1"]
    assert {r["model"] for r in stub.requests} == {"stub"}
    # one extraction per batch (D1:1+D1:2, then D2:1 flushed at session end) and one decision per fact
    assert broker.totals()["calls"] == len(stub.requests) == 5
    assert {"text": "Ana: I adopted a grey cat called Miso.", "sources": ["D1:1", "D1:2"]} in result.dump


def test_llm_seeds_are_skipped_offline_as_needs_model(locomo_path):
    """Offline (no --model) mem0 and mem_alpha are never run, never faked: `needs --model` / a clear error."""
    from mstar.cli.eval_cmds import _eval_one
    from mstar.tasks.registry import get_task

    episodes = get_task("locomo", data=locomo_path).episodes("test")[:1]
    for seed in ("mem0", "mem_alpha"):
        program, summary = _eval_one(seed, episodes, 1024, "inline", Toolkit(), {}, "t")
        assert program.needs_llm and summary is None
    exe = shutil.which("mstar")
    cmd = [exe] if exe else [sys.executable, "-m", "mstar.cli.main"]
    r = subprocess.run([*cmd, "eval", "mem0", "--task", "locomo", "--data", str(locomo_path), "--limit", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "needs an LLM: pass --model" in r.stdout + r.stderr
