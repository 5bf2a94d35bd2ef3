"""`mstar evolve` against several suites at once (the joint objective) and `--transfer` in the final step.

Everything runs for real (the engine, the inline sandbox, `mstar eval` in its own process); the suites
are small (the hand-made ``tiny`` task, a small synthetic one) so a run takes seconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from review_helpers import browser  # noqa: F401 - a fixture

from mstar.errors import UsageError
from mstar.evolve.store.scores import EpisodeAgg, ScoreBook
from mstar.tasks.joint import (
    choose_per_suite,
    group_of,
    joint_score,
    joint_weights,
    namespaced,
    pair_data,
    split_task_opts,
)

ENTRY = Path(__file__).resolve().parent / "evolve_entry.py"
LME_SMALL = Path(__file__).resolve().parent / "fixtures" / "longmemeval_small.json"
ENV = os.environ | {"MSTAR_EMBEDDER": "hashing"}  # the same embedder for the run and for `mstar eval`
SMALL_SYN = ["synthetic.episodes=4", "synthetic.events=120", "synthetic.probes=10"]
JOINT = ["evolve", "--task", "tiny", "--task", "synthetic", *[a for o in SMALL_SYN for a in ("-o", o)],
         "--budget", "64", "--seeds", "bm25,recency", "--operators", "jitter=1", "--children-per-gen", "2",
         "--executor", "inline", "--sandbox", "inline", "--embedder", "hashing", "--quiet"]


def mstar(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ENTRY), *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def eval_recall(program: str, *args: str) -> float:
    r = mstar("eval", program, "--budget", "64", "--sandbox", "inline", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["overall"]["evidence_recall"]


# --- the objective, by hand ------------------------------------------------------------------------------
def _agg(scores: list[float]) -> EpisodeAgg:
    a = EpisodeAgg()
    for i, s in enumerate(scores):
        a.add_probe({"evidence_recall": s, "category": "c"}, "evidence_recall", 10, None, f"q{i}")
    return a


def test_the_joint_objective_is_the_mean_of_per_suite_means_not_the_pooled_mean():
    book = ScoreBook("evidence_recall", group=group_of)
    book.put("p", "train", "big/e1", _agg([1.0] * 30))
    book.put("p", "train", "big/e2", _agg([1.0] * 10 + [0.0] * 10))
    book.put("p", "train", "small/e1", _agg([0.0, 0.5]))
    ids = ["big/e1", "big/e2", "small/e1"]
    big, small = 40 / 50, 0.25
    assert book.score("p", "train", ids) == pytest.approx((big + small) / 2)  # 0.525
    assert book.score("p", "train", ids) != pytest.approx(40.5 / 52)  # the pooled mean it is not
    # One suite: the plain probe-weighted mean, as before (and as `mstar eval`).
    assert book.score("p", "train", ["big/e1", "big/e2"]) == pytest.approx(0.8)
    plain = ScoreBook("evidence_recall")
    plain.aggs = dict(book.aggs)
    assert plain.score("p", "train", ids) == pytest.approx(40.5 / 52)
    # A suite without a scored probe (abstention only) has no mean and is left out.
    assert joint_score({"a": (3.0, 4), "b": (0.0, 0)}) == pytest.approx(0.75)


def test_per_probe_values_are_reweighted_so_their_mean_is_the_joint_objective():
    values = {f"big/e{i}/q": 1.0 for i in range(8)} | {"small/e/q0": 0.0, "small/e/q1": 0.5}
    w = joint_weights(values, group_of)
    assert sum(w.values()) / len(w) == pytest.approx((1.0 + 0.25) / 2)
    assert joint_weights(values, None) is values


def test_the_score_book_hands_the_final_pick_joint_weighted_probe_values():
    """One aggregation: the per-probe values the 1-SE pick pairs come from the score book, weighted there,
    so their mean is the score the book ranks by; a one-suite book hands the raw values."""
    book = ScoreBook("evidence_recall", group=group_of)
    book.put("p", "val", "big/e1", _agg([1.0] * 8))
    book.put("p", "val", "small/e1", _agg([0.0, 0.5]))
    ids = ["big/e1", "small/e1"]
    values = book.probe_values("p", "val", ids)
    assert len(values) == 10
    assert sum(values.values()) / len(values) == pytest.approx(book.score("p", "val", ids)) == pytest.approx(0.625)
    plain = ScoreBook("evidence_recall")
    plain.aggs = dict(book.aggs)
    raw = plain.probe_values("p", "val", ids)
    assert sorted(raw.values()) == [0.0, 0.5] + [1.0] * 8
    assert sum(raw.values()) / len(raw) == pytest.approx(plain.score("p", "val", ids))


def test_the_suite_floor_keeps_only_programs_that_lose_to_no_seed_on_any_suite():
    """The final pick's floor (``--suite-floor``, on by default in a joint run): X has the better joint val
    (0.775 vs 0.755) but loses to seed B on suite "b"; only Y reaches both suites' best seeds (A on "a", B on
    "b"), so the pick is made among [Y]. No program reaching both: the floor is empty (the pick then falls
    back to the joint score)."""
    from types import SimpleNamespace

    from mstar.evolve.core.final import suite_floor

    book = ScoreBook("evidence_recall", group=group_of)
    vals = {"A": (0.8, 0.5), "B": (0.6, 0.7), "X": (0.9, 0.65), "Y": (0.81, 0.7), "Z": (0.9, 0.2)}
    for pid, (a, b) in vals.items():
        book.put(pid, "val", "a/e1", _agg([a] * 4))
        book.put(pid, "val", "b/e1", _agg([b] * 4))
    eng = SimpleNamespace(suites=["a", "b"], ids={"val": ["a/e1", "b/e1"]}, book=book,
                          seeds=[SimpleNamespace(id="A", name="seed_a"), SimpleNamespace(id="B", name="seed_b")])
    assert book.score("X", "val", eng.ids["val"]) > book.score("Y", "val", eng.ids["val"])
    keep, best = suite_floor(eng, ["X", "Y", "Z", "A", "B"])
    assert keep == ["Y"] and best == {"a": "seed_a", "b": "seed_b"}
    assert suite_floor(eng, ["X", "Z", "A", "B"])[0] == []


def test_the_screen_and_the_minibatch_measure_every_suite():
    from mstar.evolve.execution.cascade import choose_episodes

    ids = [f"big/e{i}" for i in range(20)] + ["small/a", "small/b", "small/c"]
    screen, mb = choose_per_suite(choose_episodes, ids, group_of, 0, 1, 1)
    assert sorted(group_of(e) for e in screen) == ["big", "small"]
    assert sorted(group_of(e) for e in mb) == ["big", "small"] and not set(screen) & set(mb)
    # One suite: exactly the draw a run made before joint runs existed (same seed, same lineage).
    assert choose_per_suite(choose_episodes, ids, None, 0, 2, 3) == choose_episodes(ids, 0, 2, 3)


def test_screen_and_minibatch_grow_per_suite_until_they_hold_enough_probes():
    """A suite of one-question episodes gets as many episodes as the probe floor needs; a suite whose one
    episode already holds them keeps its one; the sets stay disjoint and fit inside train."""
    from mstar.evolve.execution.cascade import choose_episodes

    ids = [f"conv/c{i}" for i in range(5)] + [f"qa/q{i}" for i in range(60)]
    probes = {e: (200 if group_of(e) == "conv" else 1) for e in ids}
    screen, mb = choose_per_suite(choose_episodes, ids, group_of, 0, 1, 1, probes=probes, screen_probes=8,
                                  minibatch_probes=20)
    assert [group_of(e) for e in screen].count("conv") == 1 and [group_of(e) for e in screen].count("qa") == 8
    assert [group_of(e) for e in mb].count("conv") == 1 and [group_of(e) for e in mb].count("qa") == 20
    assert not set(screen) & set(mb)
    # Without a floor: the episode counts, as before.
    assert choose_per_suite(choose_episodes, ids, group_of, 0, 1, 1, probes=probes) == \
        choose_per_suite(choose_episodes, ids, group_of, 0, 1, 1)
    # A floor larger than the suite: everything that is left, never more.
    _, mb = choose_per_suite(choose_episodes, ids, group_of, 0, 1, 1, probes=probes, minibatch_probes=500)
    assert [group_of(e) for e in mb].count("qa") == 59


def test_a_namespaced_episode_reads_in_the_same_order_with_the_same_aliases():
    """So an order-sensitive harness scores in a joint run (or a transfer) what `mstar eval` gives it."""
    from mstar.tasks.synthetic import SyntheticTask
    from mstar.visible import EpisodeView

    ep = SyntheticTask(episodes=2, events=60, probes=12).episodes("test")[0]
    (copy,) = namespaced("synthetic", [ep])
    (twice,) = namespaced("transfer:synthetic", [copy])
    assert copy.id == f"synthetic/{ep.id}" and twice.id.startswith("transfer:synthetic/")
    for other in (copy, twice):
        view, mine = EpisodeView(ep), EpisodeView(other)
        assert view.alias == mine.alias
        assert [p.id for p in view.read_order(ep.probes)] == [p.id for p in mine.read_order(other.probes)]
    assert EpisodeView(ep.model_copy(update={"id": "x/" + ep.id})).alias != EpisodeView(ep).alias  # keyed on it


def test_pairing_of_task_data_and_options():
    assert pair_data(["locomo", "longmemeval"], []) == [None, None]
    assert pair_data(["synthetic", "locomo"], ["-", "x.json"]) == [None, "x.json"]
    with pytest.raises(UsageError, match=r"--data: 1 given for 2 --task; the i-th --data goes with the i-th"):
        pair_data(["locomo", "longmemeval"], ["x.json"])
    assert split_task_opts(["synthetic", "longmemeval"], {"synthetic.seed": 3, "longmemeval.split": "70/10/20"}) \
        == [{"seed": 3}, {"split": "70/10/20"}]
    with pytest.raises(UsageError, match=r"--task-opt seed: with several --task, name the suite"):
        split_task_opts(["synthetic", "longmemeval"], {"seed": 3})


# --- a joint run, end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("joint")
    r = mstar(*JOINT, "--generations", "1", "--transfer", "synthetic", "--runs-dir", str(runs), "--run-id", "j",
              "--json")
    assert r.returncode == 0, r.stderr
    return runs / "j", json.loads(r.stdout)


def test_joint_run_records_its_suites_and_scores_each(joint_run):
    run, out = joint_run
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task"] == "tiny+synthetic"
    assert cfg["suites"] == [{"task": "tiny", "data": None, "options": {}},
                             {"task": "synthetic", "data": None,
                              "options": {"episodes": 4, "events": 120, "probes": 10}}]
    assert cfg["transfer"] == [{"task": "synthetic", "data": None, "options": {}}]
    for entry in [out["best"], *out["seeds"].values()]:
        assert set(entry["suites"]) == {"tiny", "synthetic"}
        for split in ("train", "val", "test"):
            per = [entry["suites"][s][split] for s in ("tiny", "synthetic")]
            assert entry[split] == pytest.approx(sum(per) / 2)
    # The pick's floor is reported; when it kept programs, the returned one reaches each suite's best seed on val.
    floor = out["final"]["suite_floor"]
    assert set(floor["best_seeds"]) == {"tiny", "synthetic"} and floor["of"] >= len(out["seeds"])
    if floor["programs"]:
        for suite, seed in floor["best_seeds"].items():
            assert out["best"]["suites"][suite]["val"] >= out["seeds"][seed]["suites"][suite]["val"]


def test_the_report_scores_a_joint_run_as_the_run_does(joint_run):
    """`mstar report` / the dashboard show the joint objective (mean of suite means) and each suite's own
    score, the numbers `mstar evolve` printed; not the probes pooled across suites."""
    from mstar.report.extract import extract

    run, out = joint_run
    data = extract(run)
    by_name = {p["name"]: p for p in data["programs"] if p["operator"] == "seed"}
    for seed, entry in out["seeds"].items():
        p = by_name[seed]
        for split in ("train", "val", "test"):
            assert p["scores"][split] == pytest.approx(entry[split])
            for suite in ("tiny", "synthetic"):
                assert p["suite_scores"][split][suite] == pytest.approx(entry["suites"][suite][split])
    rows = {r["name"]: r for r in data["final"]["rows"] if r["seed"]}
    assert rows["bm25"]["suites"]["test"]["tiny"] == pytest.approx(out["seeds"]["bm25"]["suites"]["tiny"]["test"])


def test_the_reports_category_heatmap_keeps_each_suites_categories_apart(joint_run):
    """Per-category cells of a joint run are per suite ("synthetic/temporal"), each equal to `mstar eval`
    of that suite alone; the two suites' categories are never pooled into one cell."""
    from mstar.report.extract import extract

    run, out = joint_run
    data = extract(run)
    seed_id = {p["name"]: p["id"] for p in data["programs"] if p["operator"] == "seed"}["bm25"]
    cells = data["heatmap"]["category"]["test"][seed_id]
    assert cells and all(col.split("/", 1)[0] in ("tiny", "synthetic") for col in cells)
    r = mstar("eval", "bm25", "--task", "synthetic", "-o", "episodes=4", "-o", "events=120", "-o", "probes=10",
              "--split", "test", "--budget", "64", "--sandbox", "inline", "--json")
    assert r.returncode == 0, r.stderr
    alone = {c: m for c, m in json.loads(r.stdout)["by_category"].items() if m["evidence_recall"] is not None}
    assert {f"synthetic/{c}" for c in alone} == {c for c in cells if c.startswith("synthetic/")}
    for c, m in alone.items():
        assert cells[f"synthetic/{c}"] == pytest.approx(m["evidence_recall"], abs=1e-4)


def test_the_report_page_says_what_the_suite_floor_did(joint_run, browser):  # noqa: F811
    """The report's final section names the pick's floor as the run recorded it (real Chromium)."""
    from review_helpers import open_tab

    from mstar.report.render import write_report

    run, out = joint_run
    floor = out["final"]["suite_floor"]
    page_file, _data = write_report(run)
    tab = open_tab(browser, page_file.as_uri())
    assert tab.errors == []
    rule = tab.page.inner_text("#rule")
    assert "Suite floor:" in rule and all(seed in rule for seed in floor["best_seeds"].values())
    if floor["programs"]:
        assert f"{floor['programs']} of {floor['of']} candidates lose to no seed" in rule
    else:
        assert "no candidate reaches every suite's best seed" in rule


def test_joint_scores_equal_mstar_eval_on_each_suite(joint_run):
    """The hand-computed objective: `mstar eval` of a seed on each suite's test split, then their mean."""
    _, out = joint_run
    tiny = eval_recall("bm25", "--task", "tiny", "--split", "test")
    syn = eval_recall("bm25", "--task", "synthetic", "--split", "test", *[a for o in SMALL_SYN
                                                                             for a in ("-o", o.split(".", 1)[1])])
    seed = out["seeds"]["bm25"]
    assert seed["suites"]["tiny"]["test"] == pytest.approx(tiny)
    assert seed["suites"]["synthetic"]["test"] == pytest.approx(syn)
    assert abs(tiny - syn) > 0.05  # so the mean is a real test (equal suites would hide the weighting)
    assert seed["test"] == pytest.approx((tiny + syn) / 2)


def test_transfer_rows_for_the_winner_and_every_seed_equal_mstar_eval(joint_run):
    run, out = joint_run
    assert out["transfer_split"] == {"synthetic": "test"}
    rows = out["transfer"]["synthetic"]
    assert set(rows) == {"best", "bm25", "recency"}
    assert all(v is not None for v in rows.values())
    assert rows["best"] == pytest.approx(eval_recall(str(run / "best.py"), "--task", "synthetic", "--split", "test"))
    for seed in ("bm25", "recency"):
        assert rows[seed] == pytest.approx(eval_recall(seed, "--task", "synthetic", "--split", "test"))
    assert rows["bm25"] != pytest.approx(rows["recency"])


def test_resume_keeps_the_suites_and_the_table_shows_per_suite_and_transfer_columns(joint_run, tmp_path):
    run, first = joint_run
    r = mstar("evolve", "--resume", str(run), "--generations", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    head = r.stdout
    assert "tiny+synthetic" in head and "tiny test" in head and "synthetic test" in head
    assert "\u2192 synthetic" in r.stdout
    seed_row = next(line for line in r.stdout.splitlines() if "seed recency" in line)
    assert f"{first['transfer']['synthetic']['recency']:.4f}" in seed_row
    again = mstar("evolve", "--resume", str(run), "--task", "locomo", "--generations", "3")
    assert again.returncode == 2 and "keeps its suites" in again.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--task", "tiny", "--task", "synthetic", "--data", "x.json"], "--data: 1 given for 2 --task"),
    (["--task", "tiny", "--task", "synthetic", "-o", "seed=1"], "--task-opt seed: with several --task"),
    (["--task", "tiny", "--task", "tiny"], "--task tiny: given twice"),
    (["--task", "tiny", "--data", "-", "--task", "longmemeval", "--data", str(LME_SMALL), "-o", "longmemeval.split=0/1/1"],
     "--task longmemeval: its train split is empty"),
    (["--task", "tiny", "--transfer", "nope"], "--transfer nope: unknown task 'nope'"),
    (["--task", "tiny", "--transfer", "synthetic:x.json"], "--data: task 'synthetic' generates its data"),
    (["--task", "tiny", "--transfer", "tiny"], "--transfer tiny: the run evolves on this suite already"),
    (["--task", "tiny", "--transfer", "locomo:/nonexistent/l.json"], "/nonexistent/l.json: no such file"),
])
def test_bad_joint_and_transfer_requests_are_one_line_errors(tmp_path, args, fragment):
    r = mstar("evolve", *args, "--generations", "1", "--executor", "inline", "--sandbox", "inline",
              "--runs-dir", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not any(tmp_path.iterdir())  # nothing was started


def test_transfer_to_longmemeval_dev_is_bounded_by_the_final_time_limit(lme_dev_path, tmp_path):
    """Transfer shares --final-minutes with val and test: what does not fit is skipped and said so."""
    r = mstar("evolve", "--task", "tiny", "--budget", "64", "--seeds", "bm25,recency", "--operators", "jitter=1",
              "--children-per-gen", "1", "--generations", "1", "--executor", "inline", "--sandbox", "inline",
              "--embedder", "hashing", "--final-minutes", "0.02", "--transfer", f"longmemeval:{lme_dev_path}",
              "--runs-dir", str(tmp_path), "--run-id", "t", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["transfer_split"] == {"longmemeval": "test"}
    rows = out["transfer"]["longmemeval"]
    assert set(rows) == {"best", "bm25", "recency"}
    skipped = out["final"]["skipped"]["transfer:longmemeval"]
    assert skipped > 0
    # A program with any test question left unscored shows no score (never a score over part of the split).
    assert any(v is None for v in rows.values())
    assert out["final"]["seconds"] < 1.2 + 30  # the limit plus one episode in flight
    assert "transfer to longmemeval" in r.stderr and "skipped" in r.stderr


def test_a_transfer_suite_without_a_test_split_is_scored_whole_and_says_so(tmp_path):
    """The small LongMemEval fixture hashes all 6 questions into train: transfer uses the whole suite."""
    base = ["evolve", "--task", "tiny", "--budget", "64", "--seeds", "bm25,recency", "--operators", "jitter=1",
            "--children-per-gen", "1", "--generations", "1", "--executor", "inline", "--sandbox", "inline",
            "--embedder", "hashing", "--transfer", f"longmemeval:{LME_SMALL}", "--runs-dir", str(tmp_path)]
    r = mstar(*base, "--run-id", "a", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["transfer_split"] == {"longmemeval": "all"}
    rows = out["transfer"]["longmemeval"]
    for seed in ("bm25", "recency"):
        assert rows[seed] == pytest.approx(eval_recall(seed, "--task", "longmemeval", "--data", str(LME_SMALL),
                                                       "--split", "all"))
    table = mstar("evolve", "--resume", str(tmp_path / "a"), "--generations", "2", "--quiet")
    assert table.returncode == 0, table.stderr
    assert "\u2192 longmemeval (all)" in table.stdout


# --- --train-episodes: a fixed train subset per suite ------------------------------------------------------
def test_cap_train_keeps_a_fixed_subset_per_suite_in_file_order():
    from mstar.episodes import Episode
    from mstar.tasks.joint import cap_train

    eps = [Episode(id=f"{s}/{i}", events=[], probes=[]) for s in ("a", "b") for i in range(20)]
    kept = cap_train(eps, 5, group_of)
    assert [sum(group_of(e.id) == s for e in kept) for s in ("a", "b")] == [5, 5]
    assert [e.id for e in kept] == [e.id for e in eps if e in kept]  # file order inside the subset
    assert [e.id for e in cap_train(list(reversed(eps)), 5, group_of)] == [e.id for e in reversed(kept)]
    assert {e.id for e in kept} != {f"{s}/{i}" for s in ("a", "b") for i in range(5)}  # not just the first ones
    assert cap_train(eps, None, group_of) == eps and cap_train(eps, 100, group_of) == eps
    assert len(cap_train(eps, 3)) == 3  # one suite: no group


def test_train_episodes_limits_what_the_search_scores_and_nothing_else(tmp_path):
    base = [*JOINT, "--generations", "1", "--runs-dir", str(tmp_path)]
    r = mstar(*base, "--train-episodes", "2", "--run-id", "cap", "--json")
    assert r.returncode == 0, r.stderr
    full = mstar(*base, "--run-id", "full", "--json")
    assert full.returncode == 0, full.stderr
    c = sqlite3.connect(tmp_path / "cap" / "run.db")
    eps = {split: {e for (e,) in c.execute("SELECT DISTINCT episode FROM evaluations WHERE split=?", (split,))}
           for split in ("train", "val", "test")}
    c.close()
    assert sorted(group_of(e) for e in eps["train"]) == ["synthetic", "synthetic", "tiny", "tiny"]
    cap, whole = json.loads(r.stdout), json.loads(full.stdout)
    assert cap["seeds"]["bm25"]["test"] == pytest.approx(whole["seeds"]["bm25"]["test"])  # val/test untouched
    assert cap["seeds"]["bm25"]["val"] == pytest.approx(whole["seeds"]["bm25"]["val"])
    assert json.loads((tmp_path / "cap" / "config.json").read_text())["train_episodes"] == 2
    again = mstar("evolve", "--resume", str(tmp_path / "cap"), "--generations", "2", "--train-episodes", "3")
    assert again.returncode == 2 and "--train-episodes" in again.stderr


def test_a_joint_run_names_the_probe_floors_when_a_suite_is_thin_on_the_screen(tmp_path):
    lme = ["--task", "longmemeval", "--data", str(LME_SMALL)]
    base = ["evolve", "--task", "tiny", "--data", "-", *lme, "--budget", "64", "--seeds", "bm25", "--operators", "jitter=1",
            "--children-per-gen", "1", "--generations", "1", "--executor", "inline", "--sandbox", "inline",
            "--embedder", "hashing", "--runs-dir", str(tmp_path), "--final-minutes", "1"]
    r = mstar(*base, "--run-id", "thin")
    assert r.returncode == 0, r.stderr
    assert "--minibatch-probes N" in r.stderr and "probe(s) of longmemeval" in r.stderr
    floors = mstar(*base, "--run-id", "floors", "--screen-probes", "2", "--minibatch-probes", "2")
    assert floors.returncode == 0, floors.stderr
    assert "probe(s) of" not in floors.stderr
