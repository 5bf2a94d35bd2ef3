"""Warm spares: the next sandboxes are started while the current episode runs.

Starting a sandbox (container create + start, interpreter start, importing numpy / bm25s / pydantic)
costs ~0.3-0.5 s, paid once per episode. Episodes run one after another, so the backend keeps ``depth``
runners started and waiting (with the allow-list already imported) and hands one to each ``open``;
only the first episode waits (none with ``prewarm``). With one program to run (``mstar eval HARNESS``)
the caller asks for ``depth`` 0: ``prewarm`` starts the one sandbox it needs and reuse (below) serves
every later episode, so no spare competes with the evaluation for the CPU. Two, not one: a LoCoMo episode of bm25 takes
~0.3 s, less than a start, so one spare started with episode k is not ready for episode k+1 (measured;
docs/BENCHMARKS.md). A spare serves exactly one session, is checked alive before use, is discarded
when idle too long or when the next session wants other limits or labels, and is killed by
``close()`` and at interpreter exit.

Reuse: a runner whose session ended cleanly (no failure, no guard violation, no deadline hit, still
alive; ``RpcSession.release``) is kept idle for the next session of the *same program*, which sends
``load`` again: the runner re-executes the source in a fresh module object and builds a fresh
``Memory`` with the new knobs, and the host restarts the episode and call deadlines. Episodes of one
program come in a row, so after the first only the program's own work is paid, not a start. What can
survive from one episode to the next in the runner: imported modules (numpy, bm25s, ... and anything
the program stored on them), threads it started, its memory use (the container's limit stays). That is
acceptable because it is the same program's code seeing the same kind of data it is allowed to see
(gold never enters a sandbox) -- inline runs every episode in one process anyway; the temp dir is
emptied by the runner on every re-load. Never reused: across programs (the key holds the source's
hash), with other limits or labels, after any failure (the session is killed instead). Bounded: at most
``MAX_REUSED`` idle runners, each killed after ``REUSE_IDLE_S`` idle or ``REUSE_MAX_AGE_S`` of life, by
``close()`` and at interpreter exit.
"""
from __future__ import annotations

import ast
import atexit
import hashlib
import threading
import time
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from mstar.sandbox.base import SessionLimits

MAX_IDLE_S = 600.0
DEPTH = 2  # spares kept ready (see the module's docstring); 0 for one program (``spares=0``)
MAX_REUSED = 2  # idle runners kept for reuse
REUSE_IDLE_S = 30.0  # the next episode of a program comes at once; a longer gap means it is done
# A reused runner is retired after this long: other hosts' cleanup removes containers older than
# docker_backend.STALE_AFTER_S, which this must stay far below.
REUSE_MAX_AGE_S = 3600.0

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
    def __init__(self, factory: Factory, enabled: bool = True, depth: int = DEPTH, reuse: bool = True):
        self.factory = factory
        self.enabled = enabled
        self.reuse = reuse
        self.depth = depth
        self._lock = threading.Lock()
        self._ready: list[tuple[tuple[Any, ...], Any, float]] = []  # (key, transport, started)
        self._making: list[tuple[tuple[Any, ...], threading.Thread]] = []
        self._idle: list[tuple[tuple[Any, ...], Any, float]] = []  # (reuse key, transport, idle since)
        self._sweeper: threading.Thread | None = None
        self._wake = threading.Condition(self._lock)
        self._closed = False
        _POOLS.add(self)

    @staticmethod
    def _key(limits: SessionLimits, labels: dict[str, str], preload: str) -> tuple[Any, ...]:
        return (limits.model_dump_json(), tuple(sorted(labels.items())), preload)

    @staticmethod
    def _reuse_key(limits: SessionLimits, labels: dict[str, str], source: str) -> tuple[Any, ...]:
        return (hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest(), limits.model_dump_json(),
                tuple(sorted(labels.items())))

    def take(self, limits: SessionLimits, labels: dict[str, str], source: str = "") -> Any:
        """A started transport for one session: this program's idle runner (``transport.reused`` set)
        when one lives, else a spare when one fits and lives, else a fresh one.

        The next spares preload what this program imports: episodes of one program come in a row.
        """
        reused = self._take_idle(self._reuse_key(limits, labels, source))
        if reused is not None:
            return reused  # no refill: the next episode will most likely reuse this one too
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
        transport.reused = False
        transport.born = time.monotonic()
        self._refill(key, limits, labels, preload)
        return transport

    def _take_idle(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            i = next((i for i, (k, _, _) in enumerate(self._idle) if k == key), None)
            found = None if i is None else self._idle.pop(i)[1]
        if found is None:
            return None
        if not found.alive():  # it died or spoke while idle: not fit for a session
            found.kill()
            return None
        found.reused = True
        found.stderr.clear()  # a failure's detail shows this session's stderr, not the last one's
        return found

    def give_back(self, transport: Any, limits: SessionLimits, labels: dict[str, str], source: str) -> None:
        """A session ended cleanly: keep its runner for the next session of the same program, or kill it."""
        fit = (self.reuse and transport.alive()
               and time.monotonic() - getattr(transport, "born", 0.0) < REUSE_MAX_AGE_S
               and getattr(transport, "reusable", lambda: True)())
        if not fit:
            transport.kill()
            return
        evicted = []
        with self._lock:
            if self._closed:  # being closed: nobody will take it
                evicted.append(transport)
            else:
                self._idle.append((self._reuse_key(limits, labels, source), transport, time.monotonic()))
            while len(self._idle) > MAX_REUSED:
                evicted.append(self._idle.pop(0)[1])  # the oldest: least likely to be asked for again
            if self._sweeper is None or not self._sweeper.is_alive():
                self._sweeper = threading.Thread(target=self._sweep, daemon=True, name="mstar-sandbox-idle")
                self._sweeper.start()
            self._wake.notify()
        for t in evicted:
            t.kill()

    def _sweep(self) -> None:
        """Kill idle runners past ``REUSE_IDLE_S``; ends when none is left (``give_back`` restarts it)."""
        while True:
            with self._lock:
                if not self._idle:
                    self._sweeper = None
                    return
                now = time.monotonic()
                expired = [t for _, t, since in self._idle if now - since >= REUSE_IDLE_S]
                self._idle = [e for e in self._idle if now - e[2] < REUSE_IDLE_S]
                if not expired:
                    self._wake.wait(max(0.01, min(since for _, _, since in self._idle) + REUSE_IDLE_S - now))
            for t in expired:
                t.kill()

    def prewarm(self, limits: SessionLimits, labels: dict[str, str], source: str = "") -> None:
        """Start the spares now (e.g. while the host loads the data), so no episode waits for a start:
        at least one, even with ``depth`` 0."""
        preload = preload_for(source)
        self._refill(self._key(limits, labels, preload), limits, labels, preload, max(1, self.depth))

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

    def _refill(self, key: tuple[Any, ...], limits: SessionLimits, labels: dict[str, str], preload: str,
                depth: int | None = None) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._making = [(k, th) for k, th in self._making if th.is_alive()]
            have = sum(k == key for k, _, _ in self._ready) + sum(k == key for k, _ in self._making)
            for _ in range((self.depth if depth is None else depth) - have):
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
        """Kill the spares (and wait for those being made) and the idle runners. Safe to call twice; the
        pool stays usable."""
        with self._lock:
            self._closed = True
            making, self._making = self._making, []
        for _, th in making:
            th.join()
        with self._lock:
            ready, self._ready = self._ready, []
            idle, self._idle = self._idle, []
            self._closed = False
            self._wake.notify()
        for _, t, _ in ready + idle:
            t.kill()


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()
