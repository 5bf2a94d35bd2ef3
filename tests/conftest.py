"""Shared fixtures. Data files are read from ../shared/data (or $MSTAR_DATA); never committed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
