"""The page: one HTML file with the styles, the app (SVG charts) and the run's data all inline.

The report embeds its data gzip-compressed and base64-encoded (the browser inflates it with the
standard DecompressionStream): program sources repeat from parent to child, so this keeps a
500-program run's file to a few megabytes, and no byte of a harness's source is ever parsed as HTML.
A Content-Security-Policy in the page forbids every network request (the dashboard allows its own
origin only), so even hostile text in a program cannot make the page fetch anything.
"""

from __future__ import annotations

import base64
import gzip
import json
from importlib import resources
from pathlib import Path
from typing import Any


def _asset(name: str) -> str:
    return resources.files("mstar.report").joinpath("assets", name).read_text(encoding="utf-8")


def _script(js: str) -> str:
    return js.replace("</script", "<\\/script")  # a literal in the JS must not close the tag


def page(*, mode: str, title: str, boot: dict[str, Any]) -> str:
    """The HTML around the app; ``mode`` is report (data inline, no network) or dashboard (same-origin API)."""
    app = "\n".join(_asset(n) for n in ("charts.js", "app.js") + (("dashboard.js",) if mode == "dashboard" else ()))
    html = _asset("page.html")
    parts = {
        "__CONNECT__": "'self'" if mode == "dashboard" else "'none'",
        "__TITLE__": title.replace("<", "").replace("&", ""),
        "__CSS__": _asset("style.css"),
        "__BOOT__": f"MSTAR.boot({json.dumps(boot)});",
        "__APP__": _script(app),
    }
    for key, value in parts.items():
        html = html.replace(key, value, 1)
    return html


def pack(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":"), default=str).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def write_report(run_dir: Path, out: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Extract ``run_dir`` and write its report (default ``run_dir/report.html``) atomically."""
    from mstar.report.extract import extract

    data = extract(run_dir)
    html = page(mode="report", title=f"mstar run {data['run']['id']}", boot={"mode": "report", "payload": pack(data)})
    out = Path(out) if out else Path(run_dir) / "report.html"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out, data
