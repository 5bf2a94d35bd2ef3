"""`pytest -q` without Docker ends with one line naming what was skipped and how to run it.

Runs pytest in a subprocess on a throw-away test file whose conftest is this project's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

TESTS = '''
import pytest

@pytest.mark.parametrize("i", range(3))
def test_docker(i):
    pytest.skip("no Docker engine answers (start dockerd)")

def test_data():
    pytest.skip("locomo10.json not found (set MSTAR_DATA)")

def test_other():
    pytest.skip("no pty")

def test_runs():
    assert True
'''


def test_one_line_names_the_skips_and_the_fix(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_some.py").write_text(TESTS)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    lines = [ln for ln in r.stdout.splitlines() if " skipped: " in ln]
    assert len(lines) == 1, r.stdout
    line = lines[0]
    assert line.startswith("5 skipped: 3 need Docker (start an engine"), line
    assert "1 need locomo10.json (set MSTAR_DATA" in line and "1 other (pytest -rs lists them)" in line
    assert "CI=true" in line


def test_no_line_without_skips(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_some.py").write_text("def test_ok():\n    assert True\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and " skipped: " not in r.stdout, r.stdout
