"""Runs record the evidence-recall rule that scored them; a run scored by another rule is never resumed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mstar.errors import UsageError
from mstar.evolve.core.config import EvolveConfig
from mstar.evolve.store.run_store import RunStore
from mstar.scoring import METRIC_VERSION

ENTRY = Path(__file__).resolve().parent / "evolve_entry.py"


def test_new_config_carries_the_current_version_and_reloads(tmp_path):
    cfg = EvolveConfig(run_id="r", task="synthetic")
    cfg.save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["metric_version"] == METRIC_VERSION == 2
    assert EvolveConfig.load(tmp_path).metric_version == METRIC_VERSION


@pytest.mark.parametrize("old", [None, 1])
def test_resume_of_a_run_scored_by_an_older_rule_is_refused_in_one_line(tmp_path, old):
    EvolveConfig(run_id="r", task="synthetic").save(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    if old is None:
        del data["metric_version"]  # saved before the field existed
    else:
        data["metric_version"] = old
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match="metric version 1") as e:
        EvolveConfig.load(tmp_path)
    assert "\n" not in str(e.value)
    r = subprocess.run([sys.executable, str(ENTRY), "evolve", "--resume", str(tmp_path), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "metric version 1" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run.db").exists()  # nothing was started or changed


def test_run_db_reports_its_metric_version(tmp_path):
    store = RunStore(tmp_path)
    assert store.metric_version() == 1  # a store that never said: an old run
    store.set_state("metric_version", METRIC_VERSION)
    assert store.metric_version() == METRIC_VERSION
    store.close()
