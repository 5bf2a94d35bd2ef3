"""Warm spares: the next sandboxes are started while the current episode runs.

Starting a sandbox (container create + start, interpreter start, importing numpy / bm25s / pydantic)
costs ~0.3-0.5 s, paid once per episode. Episodes run one after another, so the backend keeps ``depth``
runners started and waiting (with the allow-list already imported) and hands one to each ``open``;
only the first episode waits (none with ``prewarm``). Two, not one: a LoCoMo episode of bm25 takes
~0.3 s, less than a start, so one spare started with episode k is not ready for episode k+1 (measured;
docs/BENCHMARKS.md). A spare serves exactly one session, is checked alive before use, is discarded
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
DEPTH = 2  # spares kept ready (see the module's docstring)

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
    def __init__(self, factory: Factory, enabled: bool = True, depth: int = DEPTH):
        self.factory = factory
        self.enabled = enabled
        self.depth = depth
        self._lock = threading.Lock()
        self._ready: list[tuple[tuple[Any, ...], Any, float]] = []  # (key, transport, started)
        self._making: list[tuple[tuple[Any, ...], threading.Thread]] = []
        self._closed = False
        _POOLS.add(self)

    @staticmethod
    def _key(limits: SessionLimits, labels: dict[str, str], preload: str) -> tuple[Any, ...]:
        return (limits.model_dump_json(), tuple(sorted(labels.items())), preload)

    def take(self, limits: SessionLimits, labels: dict[str, str], source: str = "") -> Any:
        """A started transport for one session: a spare when one fits and lives, else a fresh one.

        The next spares preload what this program imports: episodes of one program come in a row.
        """
        preload = preload_for(source)
        key = self._key(limits, labels, preload)
        transport = self._pop(key)
        if transport is None:
            with self._lock:
                making = next((th for k, th in self._making if k == key), None)
            if making is not None:
                making.join()  # a spare being made is nearly ready: waiting beats starting another
                transport = self._pop(key)
        if transport is None:
            transport = self.factory(limits, labels, "", False)
        self._refill(key, limits, labels, preload)
        return transport

    def prewarm(self, limits: SessionLimits, labels: dict[str, str], source: str = "") -> None:
        """Start the spares now (e.g. while the host loads the data), so no episode waits for a start."""
        preload = preload_for(source)
        self._refill(self._key(limits, labels, preload), limits, labels, preload)

    def _pop(self, key: tuple[Any, ...]) -> Any:
        """The oldest live spare of ``key``; spares of other keys are killed (the next sessions differ)."""
        with self._lock:
            ready, self._ready = self._ready, []
        found, keep, now = None, [], time.monotonic()
        for skey, t, started in ready:
            fits = skey == key and now - started < MAX_IDLE_S
            if fits and found is None and t.alive():
                found = t
            elif fits:
                keep.append((skey, t, started))
            else:
                t.kill()
        with self._lock:
            self._ready[:0] = keep
        if found is not None:
            found.activate()
        return found

    def _refill(self, key: tuple[Any, ...], limits: SessionLimits, labels: dict[str, str], preload: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._making = [(k, th) for k, th in self._making if th.is_alive()]
            have = sum(k == key for k, _, _ in self._ready) + sum(k == key for k, _ in self._making)
            for _ in range(self.depth - have):
                th = threading.Thread(target=self._make_spare, args=(key, limits, dict(labels), preload),
                                      daemon=True, name="mstar-sandbox-spare")
                self._making.append((key, th))
                th.start()

    def _make_spare(self, key: tuple[Any, ...], limits: SessionLimits, labels: dict[str, str], preload: str) -> None:
        try:
            t = self.factory(limits, labels, preload, True)
        except Exception:  # noqa: BLE001 - no spare this time; the next open starts one itself
            return
        with self._lock:
            if not self._closed:
                self._ready.append((key, t, time.monotonic()))
                return
        t.kill()  # made after close(): nobody will take it

    def close(self) -> None:
        """Kill the spares (and wait for those being made). Safe to call twice; the pool stays usable."""
        with self._lock:
            self._closed = True
            making, self._making = self._making, []
        for _, th in making:
            th.join()
        with self._lock:
            ready, self._ready = self._ready, []
            self._closed = False
        for _, t, _ in ready:
            t.kill()


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()
