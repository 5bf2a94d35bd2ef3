"""A warm spare: the next sandbox is started while the current episode runs.

Starting a sandbox (container create + start, interpreter start, importing numpy / bm25s / pydantic)
costs ~0.3 s, paid once per episode. Episodes run one after another, so the backend keeps one runner
started and waiting (with the allow-list already imported) and hands it to the next ``open``; only the
first episode waits. A spare serves exactly one session, is checked alive before use, is discarded
when idle too long or when the next session wants other limits or labels, and is killed by
``close()`` and at interpreter exit.
"""

from __future__ import annotations

import ast
import atexit
import threading
import time
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from mstar.sandbox.base import SessionLimits

MAX_IDLE_S = 600.0

# (limits, labels, preload, spare) -> a started transport; preload: comma-separated modules for the
# runner to import while it waits ("" for none); spare: it is a spare (a backend may start it at a lower
# CPU priority, raised by ``transport.activate()`` when it is handed out).
Factory = Callable[[SessionLimits, dict[str, str], str, bool], Any]
# What a spare may import ahead: the third-party allow-list (mstar/harness/static.py), the slow imports.
PRELOADABLE = ("numpy", "bm25s", "pydantic")


@lru_cache(maxsize=256)
def preload_for(source: str) -> str:
    """The allow-listed modules a program imports, so its spare imports exactly those ahead of time."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return ",".join(m for m in PRELOADABLE if m in names)

_POOLS: weakref.WeakSet[WarmPool] = weakref.WeakSet()


class WarmPool:
    def __init__(self, factory: Factory, enabled: bool = True):
        self.factory = factory
        self.enabled = enabled
        self._lock = threading.Lock()
        self._spare: tuple[tuple[Any, ...], Any, float] | None = None  # (key, transport, started)
        self._thread: threading.Thread | None = None
        _POOLS.add(self)

    @staticmethod
    def _key(limits: SessionLimits, labels: dict[str, str], preload: str) -> tuple[Any, ...]:
        return (limits.model_dump_json(), tuple(sorted(labels.items())), preload)

    def take(self, limits: SessionLimits, labels: dict[str, str], source: str = "") -> Any:
        """A started transport for one session: the spare when it fits and lives, else a fresh one.

        The next spare preloads what this program imports: episodes of one program come in a row.
        """
        preload = preload_for(source)
        key = self._key(limits, labels, preload)
        if self._thread is not None:
            self._thread.join()  # a spare being made is nearly ready: waiting beats starting another
        with self._lock:
            spare, self._spare = self._spare, None
        transport = None
        if spare is not None:
            skey, t, started = spare
            if skey == key and time.monotonic() - started < MAX_IDLE_S and t.alive():
                transport = t
                transport.activate()
            else:
                t.kill()
        if transport is None:
            transport = self.factory(limits, labels, "", False)
        if self.enabled:
            self._thread = threading.Thread(target=self._make_spare, args=(key, limits, dict(labels), preload),
                                            daemon=True, name="mstar-sandbox-spare")
            self._thread.start()
        return transport

    def prewarm(self, limits: SessionLimits, labels: dict[str, str], source: str = "") -> None:
        """Start the first spare now (e.g. while the host loads the data), so no episode waits for a start."""
        if not self.enabled or self._thread is not None or self._spare is not None:
            return
        preload = preload_for(source)
        self._thread = threading.Thread(target=self._make_spare, args=(self._key(limits, labels, preload), limits,
                                        dict(labels), preload), daemon=True, name="mstar-sandbox-spare")
        self._thread.start()

    def _make_spare(self, key: tuple[Any, ...], limits: SessionLimits, labels: dict[str, str], preload: str) -> None:
        try:
            t = self.factory(limits, labels, preload, True)
        except Exception:  # noqa: BLE001 - no spare this time; the next open starts one itself
            return
        with self._lock:
            old, self._spare = self._spare, (key, t, time.monotonic())
        if old is not None:
            old[1].kill()

    def close(self) -> None:
        """Kill the spare (and wait for one being made). Safe to call twice."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare[1].kill()


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()
