"""The project's docs stand alone: no reference to a document outside the repository, and every
anchor of docs/ARCHITECTURE.md cited in code or docs exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / p for p in out.split() if p.endswith((".py", ".md", ".toml", ".js", ".html"))]


def test_no_reference_to_the_design_document_outside_the_repo():
    stale = [f"{p.relative_to(ROOT)}" for p in _tracked_text_files()
             if p.name != "test_docs_links.py" and re.search(r"DESIGN(\.md)? §", p.read_text(errors="replace"))]
    assert not stale, stale


def test_every_architecture_anchor_cited_exists():
    anchors = set(re.findall(r'<a id="([^"]+)"', (ROOT / "docs" / "ARCHITECTURE.md").read_text()))
    cited = {(str(p.relative_to(ROOT)), a) for p in _tracked_text_files()
             for a in re.findall(r"ARCHITECTURE\.md#([\w-]+)", p.read_text(errors="replace"))}
    assert cited, "no file cites docs/ARCHITECTURE.md"
    missing = sorted(c for c in cited if c[1] not in anchors)
    assert not missing, missing
