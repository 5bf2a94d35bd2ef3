"""The runnable files in examples/: each, with an exported seed and the offline stand-in model, shows
alice's fact to the model in her second conversation and nothing to bob."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("example,fact", [("langchain_agent.py", "Reykjavik"), ("langgraph_react_agent.py", "4417"),
                                          ("stategraph_nodes.py", "penicillin")])
def test_example_runs_offline_and_recalls_for_the_right_user(tmp_path, example, fact):
    for f in EXAMPLES.glob("*.py"):
        shutil.copy(f, tmp_path / f.name)
    r = subprocess.run([sys.executable, "-m", "mstar.cli.main", "export", "bm25", "--out", str(tmp_path / "my_memory.py"),
                        "--sandbox", "inline"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, str(tmp_path / example), str(tmp_path / "m.db")], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    alice_b, bob = out.split("alice (B):")[1].split("bob (C):")
    assert "<memory>" in alice_b and fact in alice_b.split("<memory>")[1]
    assert "<memory>" not in bob and out.count("<memory>") == 1
