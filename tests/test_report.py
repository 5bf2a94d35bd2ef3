"""`mstar report`: a real short evolution, its report.html opened from disk in a real headless Chromium."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from review_helpers import browser, evolve_tiny, open_tab, shot  # noqa: F401 - browser is a fixture

from mstar.report.extract import extract
from mstar.report.render import write_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("runs") / "r1"
    evolve_tiny(d, generations=2)
    return d


def _programs(run_dir: Path) -> list[tuple]:
    c = sqlite3.connect(run_dir / "run.db")
    try:
        return list(c.execute("SELECT id, parents FROM programs"))
    finally:
        c.close()


def test_report_cli_writes_one_self_contained_file(run_dir):
    r = subprocess.run([sys.executable, "-m", "mstar.cli.main", "report", str(run_dir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    html = (run_dir / "report.html").read_text()
    assert "report.html" in r.stdout and "programs" in r.stdout
    # Nothing that could load from elsewhere: no external script/style/src/href, and a CSP that forbids it.
    for needle in ("<script src", "<link ", "src=\"http", "href=\"http", "@import", "url(http"):
        assert needle not in html
    assert "connect-src 'none'" in html and "default-src 'none'" in html


def test_report_page_loads_without_errors_or_requests_and_shows_every_program(run_dir, browser):  # noqa: F811
    out, data = write_report(run_dir)
    tab = open_tab(browser, out.as_uri())
    page = tab.page
    assert tab.errors == []
    assert [u for u in tab.requests if not u.startswith("file://")] == []
    n = len(_programs(run_dir))
    assert n > 3  # seeds and children
    assert page.locator("#tree .node").count() == n
    assert page.get_attribute("#tree", "data-nodes") == str(n)
    # The final table names the selection rule and marks the pick.
    assert "Selection rule (--select 1se)" in page.inner_text("#rule")
    assert page.locator("#final-table tr.picked").count() == 1
    assert "metric version 2" in page.inner_text("#meta")  # a run made now records the version it was scored by
    # Heatmaps (test split first): the winner and every seed, one cell per (program, category / episode).
    split = page.input_value("#hm-split")
    assert split == "test"
    for kind, sel in (("category", "#hm-cat .cell"), ("episode", "#hm-ep .cell")):
        table = data["heatmap"][kind][split]
        seeds = {p["id"] for p in data["programs"] if p["operator"] == "seed"}
        assert seeds | {data["run"]["best_id"]} == set(table)
        assert page.locator(sel).count() == sum(len(v) for v in table.values())
    assert page.locator("#ops-table tr").count() >= 2
    assert page.locator("#incidents-table tr").count() == len(data["incidents"]["rows"]) + (
        1 if data["incidents"]["rows"] else 0)
    shot(tab, "report.png")


def test_clicking_a_child_shows_its_diff_operator_and_diagnoses(run_dir, browser):  # noqa: F811
    out, data = write_report(run_dir)
    child = next(p for p in data["programs"] if p["parents"] and p["diffs"][p["parents"][0]])
    tab = open_tab(browser, out.as_uri())
    page = tab.page
    page.locator(f'#tree .node[data-id="{child["id"]}"]').click()
    detail = page.locator("#detail")
    detail.get_by_text("Diff against parent").wait_for()
    text = detail.inner_text()
    assert child["name"] in text and "jitter" in text
    assert "Failure diagnoses it answered" in text
    assert page.locator("#detail pre.diff .add").count() >= 1  # the changed KNOBS default
    assert page.locator("#detail pre.diff .del").count() >= 1
    assert child["note"] in text  # the operator's own account of the change
    assert tab.errors == []
    shot(tab, "report-detail.png")


def test_tree_filters_collapse_to_the_picks_ancestry(run_dir, browser):  # noqa: F811
    out, data = write_report(run_dir)
    tab = open_tab(browser, out.as_uri())
    page = tab.page
    page.check("#f-best")
    anc, stack = set(), [data["run"]["best_id"]]
    by = {p["id"]: p for p in data["programs"]}
    while stack:
        q = stack.pop()
        if q in by and q not in anc:
            anc.add(q)
            stack.extend(by[q]["parents"])
    assert page.locator("#tree .node").count() == len(anc)
    page.uncheck("#f-best")
    page.select_option("#f-op", "seed")
    assert page.locator("#tree .node").count() == sum(p["operator"] == "seed" for p in data["programs"])
    page.select_option("#f-op", "")
    # Zoom: the wheel narrows the plotted domain (the axis follows), double-click restores it.
    ticks = page.locator("#tree .tick").all_inner_texts()
    box = page.locator("#tree").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(4):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(60)
    zoomed = page.locator("#tree .tick").all_inner_texts()
    assert zoomed != ticks
    page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(100)
    assert page.locator("#tree .tick").all_inner_texts() == ticks


def test_extract_matches_the_store(run_dir):
    data = extract(run_dir)
    summary = json.loads(sqlite3.connect(run_dir / "run.db").execute("SELECT value FROM state WHERE key='final'").fetchone()[0])
    assert data["run"]["best_id"] == summary["best"]["id"]
    pick = next(r for r in data["final"]["rows"] if r["picked"])
    assert pick["val"] == pytest.approx(summary["best"]["val"]) and pick["test"] == pytest.approx(summary["best"]["test"])
    for name, s in summary["seeds"].items():
        row = next(r for r in data["final"]["rows"] if r["name"] == name)
        assert row["train"] == pytest.approx(s["train"]) and row["test"] == pytest.approx(s["test"])
    assert data["run"]["status"] == "finished"
    assert [g["generation"] for g in data["generations"]] == [0, 1, 2]
    assert all(len(g["islands"]) == 2 for g in data["generations"])


def test_metric_version_is_shown_when_the_run_records_it(run_dir, tmp_path):
    import shutil

    d = tmp_path / "rv"
    shutil.copytree(run_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["metric_version"] = 2
    (d / "config.json").write_text(json.dumps(cfg))
    assert extract(d)["run"]["metric_version"] == 2


def test_hostile_program_text_cannot_make_the_report_fetch_or_run_anything(run_dir, browser, tmp_path):  # noqa: F811
    """A harness's source, name and note are written by an optimiser: markup in them must stay text, and
    nothing in them may reach the network (script, image, style, link prefetch)."""
    import shutil

    from mstar.evolve.store.run_store import ProgramRecord, RunStore

    d = tmp_path / "hostile"
    shutil.copytree(run_dir, d, ignore=shutil.ignore_patterns("report.html"))
    payload = ('</script><script>window.__pwned=1;fetch("http://10.0.0.1/x")</script>'
               '<img src="http://10.0.0.2/p.png" onerror="window.__pwned=2"><style>@import "http://10.0.0.3/s.css";</style>'
               '<link rel="prefetch" href="http://10.0.0.4/"><a href="http://10.0.0.5/">x</a>')
    store = RunStore(d)
    try:
        parent = next(p for p in store.programs() if p.operator == "seed")
        store.add_program(ProgramRecord(id="hostile000000001", name="g1.9-" + payload, parents=[parent.id],
                                        generation=1, operator="jitter", source=parent.source + "\n# " + payload + "\n",
                                        status="accepted", note=payload))
    finally:
        store.close()
    out, _ = write_report(d)
    tab = open_tab(browser, out.as_uri())
    page = tab.page
    page.locator('#tree .node[data-id="hostile000000001"]').click()
    page.locator("#detail pre.diff .add").first.wait_for()
    assert payload in page.inner_text("#detail")  # shown literally
    page.fill("#f-find", "hostile000000001")
    assert page.evaluate("window.__pwned") is None
    assert [u for u in tab.requests if not u.startswith("file://")] == []
    assert page.locator("img, link[rel=prefetch], #detail a").count() == 0


def test_report_of_a_run_still_being_written_says_it_is_a_snapshot(run_dir, browser, tmp_path):  # noqa: F811
    import fcntl
    import shutil

    d = tmp_path / "live"
    shutil.copytree(run_dir, d, ignore=shutil.ignore_patterns("report.html"))
    c = sqlite3.connect(d / "run.db")
    c.execute("DELETE FROM state WHERE key='final'")
    c.commit()
    c.close()
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running `mstar evolve` holds it
        out, data = write_report(d)
    assert data["run"]["status"] == "running"
    tab = open_tab(browser, out.as_uri())
    assert "Snapshot of a run still in progress" in tab.page.inner_text("#banner")
    assert "final step has not run yet" in tab.page.inner_text("#rule")
    assert tab.errors == []


def test_island_resets_and_failed_diagnoses_are_listed_with_the_runs_events(tmp_path, monkeypatch, browser):  # noqa: F811
    """What the search did to its islands and what failed without stopping it are part of the review; a
    failure repeated on every episode is counted whole and listed up to a cap."""
    from evolve_helpers import JitterOperator, TinyTask

    from mstar.evolve.core.config import EvolveConfig, StopConfig
    from mstar.evolve.core.engine import Engine
    from mstar.evolve.execution import cascade
    from mstar.report import extract as ex

    def broken(episode, result, budget):
        raise RuntimeError("diagnosis bug")

    monkeypatch.setattr(cascade, "diagnose", broken)
    monkeypatch.setattr(ex, "INCIDENTS_SHOWN", 3)
    cfg = EvolveConfig(run_id="inc", task="tiny", budget=20, seeds=["bm25", "bm25_neighbors", "recency"],
                       operators={"jitter": 1.0}, children_per_gen=4, islands=2, island_size=5, migrate_every=5,
                       island_reset_every=1, final_k=2, stops=StopConfig(generations=2), sandbox="inline")
    Engine(cfg, tmp_path / "inc", operators={"jitter": JitterOperator()}, suite=TinyTask()).run()
    inc = extract(tmp_path / "inc")["incidents"]
    conn = sqlite3.connect(tmp_path / "inc" / "run.db")
    stored = dict(conn.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind").fetchall())
    conn.close()
    assert inc["counts"]["diagnosis_error"] == stored["diagnosis_error"] > 3
    assert inc["counts"]["island_reset"] == stored["island_reset"] >= 1
    rows = [r for r in inc["rows"] if r["kind"] == "diagnosis_error"]
    assert len(rows) == 3 and all("RuntimeError: diagnosis bug" in r["text"] for r in rows)
    reset = next(r for r in inc["rows"] if r["kind"] == "island_reset")
    assert reset["generation"] in (1, 2) and "re-seeded with" in reset["text"]
    out, data = write_report(tmp_path / "inc")
    tab = open_tab(browser, out.as_uri())
    assert tab.errors == []
    assert tab.page.locator("#incidents-table tr").count() == len(inc["rows"]) + 1
    text = tab.page.inner_text("#incidents")
    assert f"{stored['diagnosis_error']} diagnosis error" in text and "the first" in text
