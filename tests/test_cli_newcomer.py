"""The first hour as a user: what a newcomer trips over, driven through the `mstar` command.

Each test runs the console script in a subprocess, in a directory of its own, as a person would.
Offline: no LLM is involved anywhere here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def mstar(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    exe = shutil.which("mstar")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "mstar.cli.main", *args]
    full = {k: v for k, v in os.environ.items() if k != "MSTAR_DATA"} | {"COLUMNS": "200"} | (env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full)


def tiny_locomo(path: Path) -> Path:
    """A LoCoMo-format file with one conversation (the real file is not needed for the lookup rule)."""
    turns = [{"speaker": "Ann", "dia_id": f"D1:{i}", "text": f"Ann adopted a cat named Tom number {i}"}
             for i in range(1, 4)]
    conv = {"sample_id": "tiny-1", "conversation": {"speaker_a": "Ann", "speaker_b": "Bob",
            "session_1_date_time": "1:56 pm on 8 May, 2023", "session_1": turns},
            "qa": [{"question": "What is the cat called?", "answer": "Tom", "evidence": ["D1:2"], "category": 4}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([conv]))
    return path


def doctor_data(stdout: str) -> tuple[str, str]:
    """(status, detail) of doctor's data row; a long detail folds over several table lines."""
    lines = stdout.splitlines()
    i = next(n for n, ln in enumerate(lines) if "data (LoCoMo)" in ln)
    cells = [ln.split("│") for ln in lines[i:]]
    rows = [cells[0]]
    for c in cells[1:]:
        if len(c) < 4 or c[1].strip():
            break
        rows.append(c)
    return cells[0][2].strip(), "".join(c[3].strip() for c in rows)


# --- item 8: switches read as switches -----------------------------------------------------------------
@pytest.mark.parametrize("command", [("eval",), ("evolve",), ("check",), ("sandbox", "build"), ("doctor",)])
def test_help_shows_flags_as_switches(command):
    r = mstar(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert "--help" in r.stdout and "<bool>" not in r.stdout, r.stdout


# --- item 2: one data lookup rule for doctor, eval and evolve -----------------------------------------
def test_doctor_and_eval_agree_when_the_data_is_missing(tmp_path):
    status, detail = doctor_data(mstar("doctor", cwd=tmp_path).stdout)
    assert status == "missing" and "$MSTAR_DATA" in detail and "../shared/data/" in detail, detail
    r = mstar("eval", "bm25", "--task", "locomo", "--sandbox", "inline", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: --data: task 'locomo' needs locomo10.json"), r.stderr
    assert "<data>" not in r.stderr and "../shared/data/" in r.stderr


@pytest.mark.parametrize("where", ["data", "../shared/data"])
def test_doctor_and_eval_agree_on_a_default_data_folder(tmp_path, where):
    cwd = tmp_path / "work"
    cwd.mkdir()
    tiny_locomo(cwd / where / "locomo10.json")
    status, detail = doctor_data(mstar("doctor", cwd=cwd).stdout)
    assert status == "ok" and detail.startswith(f"{where}/locomo10.json"), detail
    r = mstar("eval", "bm25", "--task", "locomo", "--split", "all", "--sandbox", "inline", "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["overall"]["probes"] == 1


def test_mstar_data_wins_over_the_default_folders_in_both(tmp_path):
    cwd = tmp_path / "work"
    tiny_locomo(cwd / "data" / "locomo10.json")
    env = {"MSTAR_DATA": str(tmp_path / "elsewhere.json")}  # named but absent: never replaced by a default
    status, detail = doctor_data(mstar("doctor", cwd=cwd, env=env).stdout)
    assert status == "missing" and "elsewhere.json: no such file (from $MSTAR_DATA)" in detail, detail
    r = mstar("eval", "bm25", "--task", "locomo", "--sandbox", "inline", cwd=cwd, env=env)
    assert r.returncode == 2 and "elsewhere.json: no such file (from $MSTAR_DATA)" in r.stderr, r.stderr


def test_the_lookup_rule_is_in_help():
    for cmd in ("eval", "evolve"):
        out = " ".join(mstar(cmd, "--help").stdout.split())
        assert "$MSTAR_DATA" in out and "./data/" in out and "../shared/data/" in out, out


# --- item 5: the --sandbox auto fallback ------------------------------------------------------------------
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def test_an_argument_error_is_not_preceded_by_a_sandbox_warning(tmp_path):
    r = mstar("eval", "bm25", "--task", "nosuch", cwd=tmp_path, env=NO_ENGINE)
    assert r.returncode == 2
    assert r.stderr.startswith("error: --task: unknown task 'nosuch'") and "warning" not in r.stderr, r.stderr
    r = mstar("eval", "bm25", "--task", "locomo", cwd=tmp_path, env=NO_ENGINE)
    assert r.returncode == 2 and r.stderr.startswith("error: --data:") and "warning" not in r.stderr, r.stderr
    r = mstar("evolve", "--task", "nosuch", "--runs-dir", str(tmp_path), cwd=tmp_path, env=NO_ENGINE)
    assert r.returncode == 2
    assert r.stderr.startswith("error: --task: unknown task 'nosuch'") and "warning" not in r.stderr, r.stderr
    r = mstar("evolve", "--task", "locomo", "--runs-dir", str(tmp_path), cwd=tmp_path, env=NO_ENGINE)
    assert r.returncode == 2 and r.stderr.startswith("error: --data:") and "warning" not in r.stderr, r.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    r = mstar("check", str(bad), cwd=tmp_path, env=NO_ENGINE)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "warning" not in r.stderr, r.stderr


def test_auto_fallback_warns_once_with_the_fix_and_the_header_names_the_sandbox_that_ran(tmp_path):
    r = mstar("eval", "bm25", "--task", "synthetic", "--limit", "1", cwd=tmp_path, env=NO_ENGINE)
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "Fix: start a Docker engine" in warnings[0] and "mstar doctor" in warnings[0]
    assert "sandbox=process" in r.stdout and "sandbox=auto" not in r.stdout, r.stdout
    j = mstar("eval", "bm25", "--task", "synthetic", "--limit", "1", "--json", cwd=tmp_path, env=NO_ENGINE)
    assert json.loads(j.stdout)["sandbox"] == "process"


# --- item 3 (the exit code): a run whose probes mostly error is a failed run ----------------------------
HARNESS = '''"""A memory that {what}."""

INSTRUCTIONS = "Use the memory."
KNOBS = {{}}


class Memory:
    def __init__(self, toolkit, knobs):
        self.turns = []
        self.reads = 0

    def write(self, event):
        self.turns.append(event)

    def read(self, query):
        self.reads += 1
        if {fail}:
            raise RuntimeError("boom in read")
        return {{"context": "", "items": []}}
'''


def test_eval_exits_1_when_most_probes_error_and_says_so(tmp_path):
    crash = tmp_path / "crash.py"
    crash.write_text(HARNESS.format(what="crashes on every read", fail="True"))
    r = mstar("eval", str(crash), "--task", "synthetic", "--limit", "1", "--sandbox", "process", cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("failed: crash:") and "probes errored" in last, r.stderr
    j = mstar("eval", str(crash), "--task", "synthetic", "--limit", "1", "--sandbox", "process", "--json",
              cwd=tmp_path)
    assert j.returncode == 1 and json.loads(j.stdout)["status"] == "failed"


def test_eval_exits_0_when_few_probes_error(tmp_path):
    """One episode of three crashes (a crash ends its episode: all its probes error); the rest score."""
    from mstar.tasks.registry import get_task

    first = get_task("synthetic").episodes("test")[0].events[0].text
    once = tmp_path / "once.py"
    once.write_text(HARNESS.format(what="crashes in one episode", fail=f"self.turns[0]['text'] == {first!r}"))
    r = mstar("eval", str(once), "--task", "synthetic", "--split", "test", "--sandbox", "process", "--json",
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "ok" and 0 < out["overall"]["errors"] < out["overall"]["probes"] / 2, out["overall"]
