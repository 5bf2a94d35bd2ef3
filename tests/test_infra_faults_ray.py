"""A Ray worker node lost under a running `mstar evolve --ray-address`: the run pauses while no node
offers sandbox slots, carries on when one joins, or stops resumable with one line; a job the lost
node was running is run again, never recorded as the candidate's failure.

A real cluster on this machine (tests/ray_cluster.py): `ray start --head` with no sandbox slots of its
own and nodes joined with `ray start --address` offering them, so every evaluation runs on a node the
test kills (its raylet SIGKILLed mid-evaluation). Real Docker sandboxes, on the machine's engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_cluster import RayCluster
from test_infra_faults_docker import ENTRY, assert_nothing_blamed_on_the_engine, event_kinds, summaries

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RUN = ["evolve", "--task", "tiny", "--budget", "20", "--seeds", "bm25,recency", "--operators", "jitter=1",
       "--children-per-gen", "2", "--islands", "1", "--sandbox", "docker", "--executor", "ray", "--quiet",
       "--json", "--generations", "2"]


@pytest.fixture(scope="module")
def cluster():
    from mstar.sandbox.docker_backend import engine_answers

    if not engine_answers():
        pytest.skip("needs the Docker engine and the sandbox image")
    c = RayCluster()
    try:
        c.start_head({"mstar_sandbox": 0})  # the driver's node: the broker actor lives here, no sandbox
        yield c
    finally:
        c.close()


def start(cluster: RayCluster, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ENTRY), *args, "--ray-address", cluster.address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)


def kill_mid_evaluation(cluster: RayCluster, node: str, db: Path, proc: subprocess.Popen) -> dict:
    """Once some evaluations are stored and the node is running one, kill the node; returns what was
    stored just before."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the node was killed: {proc.stderr.read()[-3000:]}")
        if len(summaries(db)) >= 2 and cluster.busy_workers(node):
            before = summaries(db)
            cluster.kill_node(node)
            return before
        time.sleep(0.05)
    pytest.fail("the node never ran an evaluation")


def wait_event(db: Path, kind: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kind in event_kinds(db):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended without a {kind!r} event: {proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {kind!r} event")


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_node_lost_mid_evaluation_pauses_then_carries_on_when_a_node_joins(cluster, tmp_path):
    cluster.kill_workers()
    cluster.add_node("n2", {"mstar_sandbox": 2, "node2": 2})
    proc = start(cluster, *RUN, "--runs-dir", str(tmp_path), "--run-id", "r", "--infra-wait", "120")
    db = tmp_path / "r" / "run.db"
    before = kill_mid_evaluation(cluster, "n2", db, proc)
    wait_event(db, "pause", proc)  # no live node offers a sandbox slot: the run waits, it does not fail
    cluster.add_node("n3", {"mstar_sandbox": 2})
    out, err = finish(proc, 180)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert "paused: ray: no live node of the cluster offers 'mstar_sandbox' slots" in err and "resumed after" in err
    summary = json.loads(out)
    assert summary["generations"] == 2 and summary["best"]["test"] is not None
    after = summaries(db)
    assert all(after[k][0] == t for k, (t, _) in before.items())  # nothing finished was lost or redone
    assert_nothing_blamed_on_the_engine(db)  # the jobs the node was running: run again, not failed


def test_node_lost_and_none_joins_stops_resumable_in_one_line_and_resume_finishes(cluster, tmp_path):
    cluster.kill_workers()  # n4 must be the only node with slots: the one the test kills
    cluster.add_node("n4", {"mstar_sandbox": 2})
    proc = start(cluster, *RUN, "--runs-dir", str(tmp_path), "--run-id", "s", "--infra-wait", "5")
    db = tmp_path / "s" / "run.db"
    before = kill_mid_evaluation(cluster, "n4", db, proc)
    out, err = finish(proc, 120)
    assert proc.returncode == 3, err[-3000:]
    assert "Traceback" not in err and out == ""
    # One line from mstar (Ray's own raylet log lines may still come after it, and are not mstar's).
    stops = [line for line in err.splitlines() if line.startswith("stopped:")]
    assert len(stops) == 1 and stops[0].startswith("stopped: ray: no live node of the cluster offers"), err[-3000:]
    assert f"mstar evolve --resume {tmp_path / 's'}" in err.replace("\n", "")
    kept = summaries(db)
    assert all(kept[k][0] == t for k, (t, _) in before.items())
    assert "infra_stop" in event_kinds(db)
    assert_nothing_blamed_on_the_engine(db)

    cluster.add_node("n5", {"mstar_sandbox": 2})
    r = subprocess.Popen([sys.executable, str(ENTRY), "evolve", "--resume", str(tmp_path / "s"), "--json", "--quiet",
                          "--ray-address", cluster.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=cluster.env)
    out, err = finish(r, 180)
    assert r.returncode == 0, err[-3000:]
    assert json.loads(out)["generations"] == 2
    after = summaries(db)
    assert all(after[k][0] == t for k, (t, _) in kept.items())
    assert_nothing_blamed_on_the_engine(db)
