"""`mstar evolve` as a newcomer meets it: resuming a finished run, and a time limit too short to evolve.

Subprocesses of the CLI (with the test task `tiny` registered, inline executor: no Ray start per call).
Offline: no LLM anywhere.
"""

from __future__ import annotations

import json

from test_evolve_cli import BASE, mstar


def test_resume_of_a_complete_run_is_refused_without_a_new_limit_and_says_what_it_does(tmp_path):
    run = tmp_path / "r"
    first = mstar(*BASE, "--generations", "1", "--runs-dir", str(tmp_path), "--run-id", "r", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["stop_reason"] == "generation limit (1)"

    r = mstar("evolve", "--resume", str(run), "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "is complete (stopped: generation limit (1)" in r.stderr and "--max-minutes 10" in r.stderr, r.stderr

    r = mstar("evolve", "--resume", str(run), "--generations", "1", "--quiet")
    assert r.returncode == 2 and "--generations 1: this run already has 1 generations" in r.stderr, r.stderr

    r = mstar("evolve", "--resume", str(run), "--generations", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "complete (stopped: generation limit (1))" in r.stderr
    assert "This session's limits: generation 2 of the run;" in r.stderr, r.stderr
    assert "stopped: generation limit (2) · 2 generations" in r.stdout
    assert "s this session" in r.stdout and "s in all" in r.stdout, r.stdout


def test_resume_with_more_minutes_counts_this_session(tmp_path):
    first = mstar(*BASE, "--generations", "1", "--runs-dir", str(tmp_path), "--run-id", "m", "--json")
    assert first.returncode == 0, first.stderr
    r = mstar("evolve", "--resume", str(tmp_path / "m"), "--max-minutes", "0.05", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "0.05 more minutes of search" in r.stderr
    out = json.loads(r.stdout)
    assert out["stop_reason"].startswith("time limit") and out["session_s"] <= out["wall_s"]


def test_a_time_limit_too_short_to_evolve_says_so_and_reports_no_nulls(tmp_path):
    """The limit ends the search during the seeds' scoring: the result is the best seed, said so, with
    the minutes that would be enough; every program shows train, val and test (no null)."""
    r = mstar(*BASE, "--max-minutes", "0.01", "--op-opt", "jitter_sleep=0.2", "--runs-dir", str(tmp_path),
              "--run-id", "s", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["generations"] == 0 and out["note"].startswith("nothing evolved"), out.get("note")
    assert "the limit came while the seeds were scored" in out["note"] and "--max-minutes" in out["note"]
    for e in [out["best"], *out["seeds"].values()]:  # the pick needs train: the seeds' scoring is finished
        assert None not in (e["train"], e["val"], e["test"]), e
    table = mstar(*BASE, "--max-minutes", "0.01", "--runs-dir", str(tmp_path), "--run-id", "t")
    assert table.returncode == 0 and "nothing evolved" in table.stdout, table.stdout
