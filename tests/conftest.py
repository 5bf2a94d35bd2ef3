"""Shared fixtures. Data files are read from ../shared/data (or $MSTAR_DATA); never committed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Runs made by the tests score their seeds afresh: a test that stops or kills a run inside its seed phase
# must find work there. The seed cache itself is tested with it switched back on (test_result_cache.py).
os.environ["MSTAR_NO_CACHE"] = "1"


def _locomo_path() -> Path | None:
    env = os.environ.get("MSTAR_DATA")
    candidates = []
    if env:
        p = Path(env)
        candidates.append(p / "locomo10.json" if p.is_dir() else p)
    candidates.append(ROOT.parent / "shared" / "data" / "locomo10.json")
    for c in candidates:
        if c.is_file():
            return c
    return None


@pytest.fixture(scope="session")
def locomo_path() -> Path:
    p = _locomo_path()
    if p is None:
        if os.environ.get("CI") == "true":
            pytest.fail("locomo10.json not found in ../shared/data or $MSTAR_DATA (required under CI=true)")
        pytest.skip("locomo10.json not found (set MSTAR_DATA)")
    return p


def _lme_dev_path() -> Path | None:
    env = os.environ.get("MSTAR_DATA")
    candidates = [Path(env) / "longmemeval_s_dev.json.gz"] if env and Path(env).is_dir() else []
    candidates.append(ROOT.parent / "shared" / "data" / "longmemeval_s_dev.json.gz")
    return next((c for c in candidates if c.is_file()), None)


@pytest.fixture(scope="session")
def lme_dev_path() -> Path:
    """The gzipped LongMemEval_S dev half (../shared/data/README.md); the same rule as ``locomo_path``."""
    p = _lme_dev_path()
    if p is None:
        if os.environ.get("CI") == "true":
            pytest.fail("longmemeval_s_dev.json.gz not found in ../shared/data or $MSTAR_DATA (required under CI=true)")
        pytest.skip("longmemeval_s_dev.json.gz not found (set MSTAR_DATA to its folder)")
    return p


# --- one line at the end about what was skipped, and how to run it ----------------------------------------
# (kind, how to recognise its reason, what makes it run). The first matching kind wins.
SKIP_KINDS = (
    ("need Docker", ("docker", "engine"), "start an engine (sudo dockerd &) and build the image "
                                          "(mstar sandbox build --local-base); `mstar doctor` checks both"),
    ("need longmemeval_s_dev.json.gz", ("longmemeval",), "set MSTAR_DATA to the folder holding it"),
    ("need locomo10.json", ("locomo", "mstar_data"), "set MSTAR_DATA=/path/to/locomo10.json"),
    ("need the embed extra", ("embed",), 'pip install -e ".[embed]"'),
)


def skip_summary(reasons: list[str]) -> str | None:
    """'41 skipped: 35 need Docker (start ...); 6 other (pytest -rs lists them). CI=true runs them all.'"""
    if not reasons:
        return None
    counts: dict[str, int] = {}
    for r in reasons:
        low = r.lower()
        kind = next((k for k, keys, _ in SKIP_KINDS if any(w in low for w in keys)), "other")
        counts[kind] = counts.get(kind, 0) + 1
    fixes = {k: fix for k, _, fix in SKIP_KINDS} | {"other": "pytest -rs lists them"}
    parts = [f"{n} {kind} ({fixes[kind]})" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return (f"{len(reasons)} skipped: " + "; ".join(parts)
            + ". CI (.ci/run, CI=true) runs them all and fails instead of skipping.")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reasons = []
    for rep in terminalreporter.stats.get("skipped", []):
        longrepr = rep.longrepr
        reasons.append(str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr))
    line = skip_summary(reasons)
    if line:
        terminalreporter.write_line(line, yellow=True)
