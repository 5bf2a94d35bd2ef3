"""The sandbox as a user meets it: ``mstar eval --sandbox`` gives the same numbers on every backend, and
``mstar doctor`` names what is missing with its fix."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from test_sandbox_support import docker_skip_reason, ensure_image
from typer.testing import CliRunner


def _mstar(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("mstar")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "mstar.cli.main", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _metrics(out: dict) -> dict:
    """Everything a backend must not change: scores, counts, failures (timings excluded)."""
    drop = ("read_ms_p50", "write_ms_p50")
    return {
        "overall": {k: v for k, v in out["overall"].items() if k not in drop},
        "by_category": {c: {k: v for k, v in m.items() if k not in drop} for c, m in out["by_category"].items()},
        "episodes": out["episodes"], "failures": out["failures"],
    }


@pytest.fixture(scope="module")
def inline_metrics(locomo_path):
    return {seed: _metrics(json.loads(_mstar("eval", seed, "--task", "locomo", "--data", str(locomo_path),
                                             "--split", "test", "--limit", "1", "--sandbox", "inline",
                                             "--json").stdout))
            for seed in ("bm25", "bm25_neighbors")}


@pytest.mark.parametrize("seed", ["bm25", "bm25_neighbors"])
@pytest.mark.parametrize("sandbox", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_eval_prints_the_same_numbers_on_every_backend(sandbox, seed, locomo_path, inline_metrics):
    if sandbox == "docker":
        why = docker_skip_reason()
        if why:
            pytest.skip(why)
        ensure_image()
    out = json.loads(_mstar("eval", seed, "--task", "locomo", "--data", str(locomo_path), "--split", "test",
                            "--limit", "1", "--sandbox", sandbox, "--json").stdout)
    assert out["overall"]["probes"] > 100 and out["failures"] == []
    assert _metrics(out) == inline_metrics[seed]


def _doctor(monkeypatch, repo: str | None = None, digest: str | None = None) -> str:
    import mstar.sandbox.image as image
    from mstar.cli.main import app

    if repo is not None:
        monkeypatch.setattr(image, "REPO", repo)
    if digest is not None:
        monkeypatch.setattr(image, "content_hash", lambda: digest)
    r = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    return r.output


def _row(output: str, name: str) -> str:
    """The table row that starts with ``name``, its folded continuation lines joined to it."""
    lines = output.splitlines()
    start = next((i for i, ln in enumerate(lines) if name in ln), None)
    assert start is not None, f"no {name!r} row in:\n{output}"
    row = [lines[start]]
    for ln in lines[start + 1:]:
        first = ln.split("│")[1] if ln.count("│") > 2 else "x"
        if first.strip():  # the next check, or the table's border
            break
        row.append(ln)
    return " ".join(" ".join(c.strip() for c in ln.split("│")) for ln in row)


@pytest.mark.docker
def test_doctor_names_a_missing_image_and_its_fix(monkeypatch):
    why = docker_skip_reason()
    if why:
        pytest.skip(why)
    out = _doctor(monkeypatch, repo="mstar-sandbox-never-built")
    assert "docker engine" in out and "server" in _row(out, "docker engine")
    row = _row(out, "sandbox image")
    assert "missing" in row and "mstar-sandbox-never-built:" in row and "not built" in row
    assert "mstar sandbox build --local-base" in row
    auto = _row(out, "--sandbox auto")
    assert "process" in auto and "is missing" in auto  # auto falls back, and says why


@pytest.mark.docker
def test_doctor_says_when_the_image_is_stale_and_when_it_is_current(monkeypatch):
    why = docker_skip_reason()
    if why:
        pytest.skip(why)
    current = ensure_image()
    out = _doctor(monkeypatch)
    assert "ok" in _row(out, "sandbox image") and current in _row(out, "sandbox image")
    assert "docker:" in _row(out, "--sandbox auto")
    out = _doctor(monkeypatch, digest="000000000000")  # the runner changed since the last build
    row = _row(out, "sandbox image")
    assert "stale" in row and "mstar-sandbox:" in row and "mstar sandbox build" in row


@pytest.mark.docker
def test_a_bad_data_file_is_reported_and_the_early_sandbox_removed(tmp_path):
    """``mstar eval HARNESS`` starts its sandbox while the data loads: when the data is bad, the error
    names the file and the container started for nothing is gone when the command returns."""
    import docker

    why = docker_skip_reason()
    if why:
        pytest.skip(why)
    ensure_image()
    bad = tmp_path / "locomo.json"
    bad.write_text("{not json")
    client = docker.from_env()

    def evals() -> set[str]:
        return {c.id for c in client.containers.list(all=True, filters={"label": "mstar.run"})
                if c.labels.get("mstar.run", "").startswith("eval-")}

    before = evals()
    exe = shutil.which("mstar")
    cmd = [exe] if exe else [sys.executable, "-m", "mstar.cli.main"]
    r = subprocess.run([*cmd, "eval", "bm25", "--task", "locomo", "--data", str(bad), "--sandbox", "docker"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and str(bad) in r.stderr + r.stdout and "JSON" in r.stderr + r.stdout
    assert evals() - before == set()
    client.close()
