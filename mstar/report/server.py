"""``mstar dashboard``: a small read-only HTTP server on 127.0.0.1 over a folder of runs.

The standard library's ThreadingHTTPServer is enough: one user, a handful of JSON endpoints, no
uploads; it adds no dependency and no event loop. Endpoints:

- ``/``                         the page (the report's app plus a polling loop);
- ``/api/runs``                 every run under the folder with its status;
- ``/api/runs/<name>/data``     one run's data; ``?stamp=S`` answers ``{"unchanged": true}`` when the
                                store has not changed since S, so polling an idle run costs one query.

Every request opens the run's store read-only in a short transaction (see ``source``), so a running
``mstar evolve`` is never blocked. Errors become JSON ``{"error": "..."}`` the page shows as a banner.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mstar.report.extract import Cache, extract, stamp
from mstar.report.render import page
from mstar.report.source import RunReadError, check_schema, load_config, lock_held, read_only, run_status


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Runs under ``root`` (each a folder with run.db), newest first, with status or the reason it cannot be read."""
    out = []
    for d in sorted((p for p in root.iterdir() if p.is_dir() and (p / "run.db").is_file()),
                    key=lambda p: (p / "run.db").stat().st_mtime, reverse=True):
        try:
            with read_only(d) as c:
                check_schema(c, d / "run.db")
                final = c.execute("SELECT value FROM state WHERE key='final'").fetchone()
                pid = c.execute("SELECT payload FROM events WHERE kind='session' ORDER BY id DESC LIMIT 1").fetchone()
            status = run_status(d, json.loads(final[0]) if final else None, json.loads(pid[0]).get("pid") if pid else None)
            out.append({"name": d.name, "status": status, "task": load_config(d).get("task")})
        except (RunReadError, ValueError, OSError) as e:
            out.append({"name": d.name, "status": "unreadable", "detail": str(e)})
    return out


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the terminal stays quiet; errors reach the page

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, code: int = 200) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":"), default=str).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        # DNS rebinding: a page from elsewhere that resolves its own name to 127.0.0.1 sends its own Host.
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if host not in ("127.0.0.1", "localhost", "::1"):
            self._json({"error": f"host {host!r} not served: open the dashboard at 127.0.0.1"}, HTTPStatus.FORBIDDEN)
            return
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/") if p]
        try:
            if not parts:
                self._send(200, self.server.html.encode(), "text/html; charset=utf-8")
            elif parts == ["api", "runs"]:
                self._json({"root": str(self.server.root), "runs": list_runs(self.server.root)})
            elif len(parts) == 4 and parts[:2] == ["api", "runs"] and parts[3] == "data":
                self._run_data(parts[2], urllib.parse.parse_qs(url.query).get("stamp", [None])[0])
            else:
                self._json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND)
        except RunReadError as e:
            self._json({"error": str(e)}, HTTPStatus.UNPROCESSABLE_ENTITY)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # the page shows it; the server keeps serving the other runs
            self._json({"error": f"{type(e).__name__}: {e}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _run_data(self, name: str, since: str | None) -> None:
        run_dir = self.server.root / name
        if name in (".", "..") or "/" in name or run_dir.parent != self.server.root:
            self._json({"error": f"{name}: not a run name"}, HTTPStatus.BAD_REQUEST)
            return
        now = json.dumps(stamp(run_dir) + [_status_key(run_dir)])
        if since == now:
            self._json({"stamp": now, "unchanged": True})
            return
        self._send(200, self.server.snapshot(run_dir, now), "application/json")


def _status_key(run_dir: Path) -> str:
    """The status changes without a write when the process dies; part of the stamp so the page notices."""
    lock = run_dir / ".lock"
    try:
        return str(lock_held(lock)) if lock.exists() else "none"
    except OSError:
        return "?"


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, port: int = 8765, host: str = "127.0.0.1"):
        self.root = Path(root).resolve()
        # One extraction per run at a time, kept for its stamp: pages polling the same run share it, and
        # a slow read of a big store never piles up behind itself.
        self._locks: dict[Path, threading.Lock] = {}
        self._cache: dict[Path, tuple[str, bytes]] = {}
        self._extract_caches: dict[Path, Cache] = {}
        self._guard = threading.Lock()
        self.html = page(mode="dashboard", title="mstar dashboard", boot={"mode": "dashboard"})
        super().__init__((host, port), _Handler)

    def snapshot(self, run_dir: Path, now: str) -> bytes:
        with self._guard:
            lock = self._locks.setdefault(run_dir, threading.Lock())
        with lock:
            hit = self._cache.get(run_dir)
            if hit and hit[0] == now:
                return hit[1]
            cache = self._extract_caches.setdefault(run_dir, Cache(""))
            data = extract(run_dir, cache)
            body = json.dumps({"stamp": now, "data": data}, separators=(",", ":"), default=str).encode()
            self._cache[run_dir] = (now, body)
            return body

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def start_background(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="mstar-dashboard", daemon=True)
        t.start()
        return t
