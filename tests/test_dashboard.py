"""`mstar dashboard`: the real server on 127.0.0.1 and a real headless Chromium watching a run change."""

from __future__ import annotations

import fcntl
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from review_helpers import browser, evolve_tiny, open_tab, shot, wait_js  # noqa: F401 - browser is a fixture

from mstar.evolve.store.run_store import ProgramRecord, RunStore, freeze_knobs
from mstar.report.server import DashboardServer, list_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dash")
    evolve_tiny(root / "done", generations=1)
    # A store written by an older mstar: no proposals table, programs without the note column.
    old = sqlite3.connect(root.joinpath("old").mkdir() or root / "old" / "run.db")
    old.executescript("CREATE TABLE programs(id TEXT PRIMARY KEY, name TEXT, parents TEXT, island INTEGER, "
                      "generation INTEGER, operator TEXT, source TEXT, knobs TEXT, status TEXT, error TEXT, created REAL);"
                      "CREATE TABLE evaluations(program TEXT, split TEXT, episode TEXT, probe TEXT, metrics TEXT);")
    old.close()
    (root / "notes").mkdir()  # not a run: no run.db, not listed
    return root


@pytest.fixture()
def server(runs):
    srv = DashboardServer(runs, port=0)
    srv.start_background()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _count(run_dir: Path) -> int:
    c = sqlite3.connect(run_dir / "run.db")
    try:
        return c.execute("SELECT COUNT(*) FROM programs").fetchone()[0]
    finally:
        c.close()


def test_run_list_statuses(runs):
    listed = {r["name"]: r for r in list_runs(runs)}
    assert set(listed) == {"done", "old"}
    assert listed["done"]["status"] == "finished"
    assert listed["old"]["status"] == "unreadable" and "older mstar version" in listed["old"]["detail"]
    # While a process holds the run's lock (as `mstar evolve` does), the run is running.
    with open(runs / "done" / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert {r["name"]: r for r in list_runs(runs)}["done"]["status"] == "running"
    assert {r["name"]: r for r in list_runs(runs)}["done"]["status"] == "finished"


def test_dashboard_shows_a_program_that_lands_while_the_page_is_open(runs, server, browser):  # noqa: F811
    run_dir = runs / "done"
    tab = open_tab(browser, server.url + "#run=done")
    page = tab.page
    n = _count(run_dir)
    assert page.locator("#tree .node").count() == n
    assert page.locator("#runs a").count() == 2
    renders = int(page.evaluate("document.body.dataset.renders"))
    # A new program lands through the store API (the engine's own write path), the lock held as a live run does.
    lock = open(run_dir / ".lock", "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    store = RunStore(run_dir)
    try:
        parent = next(p for p in store.programs() if p.operator == "seed")
        knobs = dict(parent.knobs)
        knobs["top_k"] = int(knobs.get("top_k", 10)) + 7
        rec = ProgramRecord(id="live0000deadbeef", name="g9.0-live", parents=[parent.id], island=0, generation=9,
                            operator="jitter", source=freeze_knobs(parent.source, knobs), knobs=knobs,
                            status="pending", note="top_k -> landed while the page was open")
        t0 = time.time()
        assert store.add_program(rec)
        page.locator('#tree .node[data-id="live0000deadbeef"]').wait_for(timeout=15_000)
        assert page.locator("#tree .node").count() == n + 1
        assert int(page.evaluate("document.body.dataset.renders")) > renders  # redrawn in place, not reloaded
        assert "running" in page.inner_text("#title")
        print(f"new program on screen after {time.time() - t0:.2f} s")
        page.locator('#tree .node[data-id="live0000deadbeef"]').click()
        page.locator("#detail pre.diff .add").first.wait_for()
        assert "landed while the page was open" in page.inner_text("#detail")
        shot(tab, "dashboard-live.png")
    finally:
        with store.tx() as c:
            c.execute("DELETE FROM programs WHERE id='live0000deadbeef'")
        store.close()
        lock.close()
    assert tab.errors == []
    origin = server.url.rstrip("/")
    assert [u for u in tab.requests if not u.startswith(origin)] == []


def test_dashboard_names_the_problem_of_an_old_store_instead_of_a_blank_page(runs, server, browser):  # noqa: F811
    tab = open_tab(browser, server.url + "#run=old", wait_renders=0)
    page = tab.page
    wait_js(page, "!document.getElementById('banner').hidden", 15)
    text = page.inner_text("#banner")
    assert "older mstar version" in text and "old" in text
    assert "Traceback" not in page.content()


def test_dashboard_reads_without_blocking_the_writer(runs, server):
    """The server's reads hold no lock a writer waits on: a write transaction commits at once while the
    dashboard is serving requests for the same run."""
    import threading
    import urllib.request

    run_dir = runs / "done"
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            urllib.request.urlopen(server.url + "api/runs/done/data").read()

    t = threading.Thread(target=hammer)
    t.start()
    try:
        store = RunStore(run_dir)
        worst = 0.0
        for i in range(20):
            t0 = time.perf_counter()
            store.set_state(f"probe{i}", i)
            worst = max(worst, time.perf_counter() - t0)
        store.close()
    finally:
        stop.set()
        t.join()
    assert worst < 1.0  # a blocked writer would wait out its 30 s busy timeout


def test_dashboard_cli_bad_input(tmp_path, runs):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "mstar.cli.main", "dashboard", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such directory" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "mstar.cli.main", "dashboard", str(runs / "done")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "this is one run" in r.stderr


def test_report_cli_bad_input(tmp_path, runs):
    import subprocess
    import sys

    def report(d: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mstar.cli.main", "report", str(d)], capture_output=True, text=True)

    cases = {tmp_path / "missing": "does not exist", runs / "notes": "is not an mstar run",
             runs / "old": "older mstar version"}
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.db").write_text("not sqlite")
    cases[tmp_path / "junk"] = "not readable as an mstar run store"
    (tmp_path / "starting").mkdir()
    sqlite3.connect(tmp_path / "starting" / "run.db").close()
    cases[tmp_path / "starting"] = "the run is just starting"
    for d, msg in cases.items():
        r = report(d)
        assert r.returncode == 2, (d, r.stdout, r.stderr)
        assert msg in r.stderr and "Traceback" not in r.stderr, (d, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
        assert not (d / "report.html").exists()
    # A copy of a finished run with a bad config.json: the file is named.
    shutil.copytree(runs / "done", tmp_path / "badcfg", ignore=shutil.ignore_patterns("report.html"))
    (tmp_path / "badcfg" / "config.json").write_text("{oops")
    r = report(tmp_path / "badcfg")
    assert r.returncode == 2 and "config.json: not valid JSON" in r.stderr


def test_incremental_extraction_equals_a_fresh_one(runs, tmp_path):
    """The dashboard's cache aggregates only newly finished episodes; the result must equal a cold read."""
    import json

    from mstar.report.extract import Cache, extract

    d = tmp_path / "inc"
    shutil.copytree(runs / "done", d)
    cache = Cache("")
    extract(d, cache)
    store = RunStore(d)
    try:
        pid = next(p.id for p in store.programs() if p.operator == "seed")
        store.add_episode(pid, "val", "tiny-extra", {"failure": None, "wall_s": 0.5},
                          [{"probe": "x:q0", "metrics": {"evidence_recall": 0.25, "category": "temporal"}, "tokens": 9,
                            "latency": 1.0, "diagnosis": {"stage": "not_stored", "question": "q?"}}])
    finally:
        store.close()

    def canon(x):
        return json.dumps(x, sort_keys=True, default=str)

    warm = extract(d, cache)
    assert canon(warm) == canon(extract(d))
    assert "tiny-extra" in warm["heatmap"]["episode"]["val"][pid]


def test_dashboard_refuses_other_hosts(server):
    """A foreign page that rebinds its own name to 127.0.0.1 sends its own Host header: no data for it."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(server.url + "api/runs", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 403
    assert urllib.request.urlopen(server.url + "api/runs").status == 200


def test_stopped_and_failed_runs(runs, tmp_path):
    """stopped: the final step ran after a user's stop; failed: the process is gone without a final step."""
    import json

    from mstar.report.extract import extract

    for name, final_change, want in (("stopped", {"stop_reason": "terminated (SIGTERM)"}, "stopped"),
                                     ("stopfile", {"stop_reason": "stop file (STOP)"}, "stopped"),
                                     ("killed", None, "failed")):
        d = tmp_path / name
        shutil.copytree(runs / "done", d)
        c = sqlite3.connect(d / "run.db")
        if final_change is None:
            c.execute("DELETE FROM state WHERE key='final'")
        else:
            final = json.loads(c.execute("SELECT value FROM state WHERE key='final'").fetchone()[0])
            final.update(final_change)
            c.execute("UPDATE state SET value=? WHERE key='final'", (json.dumps(final),))
        c.commit()
        c.close()
        assert extract(d)["run"]["status"] == want, name
        assert {r["name"]: r for r in list_runs(tmp_path)}[name]["status"] == want
