"""Shared by the report and dashboard tests: a real short evolution on the tiny task, and a real headless
Chromium (Debian's package, driven by Playwright; no browser download) that records every console
message, page error and network request."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from evolve_helpers import JitterOperator, TinyTask

from mstar.evolve.core.config import EvolveConfig, StopConfig
from mstar.evolve.core.engine import Engine

CHROMIUM = os.environ.get("MSTAR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def evolve_tiny(run_dir: Path, generations: int = 2) -> dict[str, Any]:
    """A real run (engine, store, inline sandbox, the jitter operator) of a few generations."""
    cfg = EvolveConfig(run_id=run_dir.name, task="tiny", budget=20, seeds=["bm25", "bm25_neighbors", "recency"],
                       operators={"jitter": 1.0}, children_per_gen=4, islands=2, island_size=5, migrate_every=2,
                       final_k=2, stops=StopConfig(generations=generations), sandbox="inline")
    return Engine(cfg, run_dir, operators={"jitter": JitterOperator()}, suite=TinyTask()).run()


@dataclass
class Tab:
    page: Any
    console: list[tuple[str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [m for m in self.console if m[0] in ("error", "pageerror")]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives the system chromium)")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} not found (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_tab(browser: Any, url: str, wait_renders: int = 1) -> Tab:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab = Tab(page)
    page.on("console", lambda m: tab.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: tab.console.append(("pageerror", str(e))))
    page.on("request", lambda r: tab.requests.append(r.url))
    page.goto(url)
    if wait_renders:
        wait_js(page, f"Number(document.body.dataset.renders || 0) >= {wait_renders}")
    return tab


def wait_js(page: Any, expr: str, timeout_s: float = 30.0) -> None:
    """Poll ``expr`` until true. (Playwright's wait_for_function evaluates a string in the page, which
    the page's own Content-Security-Policy forbids; page.evaluate goes through DevTools and is allowed.)"""
    import time

    end = time.monotonic() + timeout_s
    while not page.evaluate(expr):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {expr}")
        time.sleep(0.1)


def shot(tab: Tab, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    tab.page.screenshot(path=str(path), full_page=True)
    return path
