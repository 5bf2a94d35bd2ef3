"""The exported module in real agents, across processes, in a virtual environment without mstar.

Conversation A of a user tells a fact in one process; conversation B of the same user, in another
process, must show it to the model; another user must not see it. The chat model is langchain-core's
fake (``FakeMessagesListChatModel``, recorded replies, no LLM) that records its input
(tests/export_agents.py). Real LangChain ``create_agent``, real LangGraph, real SQLite.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "export_agents.py"
FACT = "My sister Zelda moved to Reykjavik and keeps three parrots."
QUESTION = "Where does my sister Zelda live now?"


def export(what: str, out: Path) -> Path:
    r = subprocess.run([sys.executable, "-m", "mstar.cli.main", "export", what, "--out", str(out), "--sandbox", "process"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def declared_requirements(module: Path) -> list[str]:
    """The packages the module's docstring says it requires, plus the agent frameworks it adapts to."""
    line = next(x for x in module.read_text().splitlines() if x.startswith("Requires:"))
    req = [p.strip() for p in line.split("(")[0].split(",")[1:]]
    return req + ["langgraph>=1.0", "langchain>=1.0", "langgraph-checkpoint-sqlite>=2.0"]


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory) -> Path:
    """A fresh venv with only the exported modules' declared dependencies (no mstar), built once.

    The requirement list comes from the docstring of an exported seed: if a module needs more than it
    declares, the tests below fail in this venv."""
    root = tmp_path_factory.mktemp("bare")
    mod = export("bm25", root / "probe_memory.py")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", *declared_requirements(mod)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(py), "-c", "import mstar"], capture_output=True, text=True, cwd=root,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "No module named 'mstar'" in r.stderr
    return py


def drive(py: Path, module: Path, store: str, adapter: str, mode: str, user: str, thread: str, text: str,
          cwd: Path) -> list[list[str]]:
    """One conversation turn in its own process; returns what the fake model was given."""
    r = subprocess.run([str(py), str(DRIVER), str(module), store, adapter, mode, user, thread, text],
                       capture_output=True, text=True, timeout=300, cwd=cwd, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def remembers_across_processes(py: Path, module: Path, tmp: Path, adapter: str, store: str | None = None) -> None:
    store = store or str(tmp / f"{adapter}.db")
    drive(py, module, store, adapter, "tell", "alice", "A", FACT, tmp)
    seen = drive(py, module, store, adapter, "ask", "alice", "B", QUESTION, tmp)
    assert seen and "Reykjavik" in "\n".join(seen[0]), seen
    if adapter != "tools":
        assert seen[0][-1].endswith(QUESTION)
    other = drive(py, module, store, adapter, "ask", "bob", "C", QUESTION, tmp)
    assert other and "Reykjavik" not in "\n".join(other[0]), other


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["middleware", "hooks", "nodes", "tools"])
def test_exported_seed_remembers_across_processes_without_mstar(bare_python, tmp_path, adapter):
    module = export("bm25", tmp_path / "seed_memory.py")
    remembers_across_processes(bare_python, module, tmp_path, adapter)


@pytest.mark.slow
def test_exported_winner_of_an_evolve_run_remembers_without_mstar(bare_python, tmp_path):
    """A real (short) evolution: the engine on the tiny task with a knob-jitter operator, two generations."""
    sys.path.insert(0, str(HERE))
    from evolve_helpers import JitterOperator, TinyTask

    from mstar.evolve.core.config import EvolveConfig, StopConfig
    from mstar.evolve.core.engine import Engine

    cfg = EvolveConfig(run_id="w", task="tiny", budget=200, seeds=["bm25", "bm25_neighbors"], operators={"jitter": 1.0},
                       children_per_gen=3, islands=1, island_size=4, final_k=2, stops=StopConfig(generations=2), sandbox="inline")
    Engine(cfg, tmp_path / "w", operators={"jitter": JitterOperator()}, suite=TinyTask()).run()
    header = (tmp_path / "w" / "best.py").read_text().splitlines()[0]
    module = export(str(tmp_path / "w"), tmp_path / "winner_memory.py")
    text = module.read_text()
    assert "From: run " in text and re.search(r"program sha256 [0-9a-f]{16}", text)
    assert header in text  # the winner's source, as the run wrote it
    for adapter in ("middleware", "hooks"):
        remembers_across_processes(bare_python, module, tmp_path, adapter)


def test_langgraph_sqlite_store_keeps_memory_across_processes(tmp_path):
    """The memory lives in LangGraph's own SqliteStore (BaseStore), next to the agent's other state."""
    module = export("bm25", tmp_path / "lg_memory.py")
    remembers_across_processes(Path(sys.executable), module, tmp_path, "middleware",
                               store=f"langgraph-sqlite:{tmp_path / 'lg_store.db'}")
