"""Waiting out infrastructure faults: the Docker engine restarted, a Ray node lost, the broker gone.

Such a fault is never the candidate's: the evaluation that hit it is not recorded, the executor
pauses, retries it with exponential backoff (shared by every job that hit the same outage, so ten
jobs failing together wait once, not ten times), and carries on as if nothing happened. When the
fault outlasts ``limit_s`` -- or one job has met it ``max_attempts`` times in a row -- ``fault``
raises ``InfrastructureError`` and the run stops; every finished evaluation is already stored, so
``mstar evolve --resume`` continues it.

What counts as an infrastructure fault is decided where the evidence is, from what the host sees
and a harness cannot forge (the engine does not answer, the node is dead): ``docker_backend``,
``ray_executor``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from mstar.errors import InfrastructureError

PAUSE_LIMIT_S = 600.0  # how long a run waits for its engine before it stops (resumable)
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
MAX_ATTEMPTS = 8  # of one job, in a row: a fault that follows one job is not a passing outage
PROBE_EVERY_S = 0.5  # while waiting, how often a cheap health probe (engine ping) is asked


class FaultPause:
    """The pause-and-retry policy of one run (or one ``mstar eval``); not thread-safe, used by the
    thread that consumes an executor's results."""

    def __init__(self, limit_s: float = PAUSE_LIMIT_S, log: Callable[[str], None] | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 first_s: float = FIRST_DELAY_S, max_delay_s: float = MAX_DELAY_S, max_attempts: int = MAX_ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.limit_s = float(limit_s)
        self.log = log or (lambda _msg: None)
        self.on_event = on_event or (lambda _kind, _data: None)
        self.first_s, self.max_delay_s, self.max_attempts = first_s, max_delay_s, max_attempts
        self.sleep, self.clock = sleep, clock
        self.since: float | None = None  # start of the current outage
        self._round_end: dict[int, float] = {}
        self._attempts: dict[Hashable, int] = {}
        self.outages = 0  # for the summary and tests
        self.paused_s = 0.0

    @property
    def paused(self) -> bool:
        return self.since is not None

    def fault(self, err: InfrastructureError, key: Hashable = None,
              probe: Callable[[], bool] | None = None) -> None:
        """``err`` stopped the job ``key``: wait (backoff; until ``probe()`` says the engine answers,
        when given) and return for the caller to retry it, or raise when the run should stop.

        Waits go by rounds: the n-th failure of any job in this outage waits until the end of round n,
        set by the first job to get there. Jobs that fail together (a Ray driver sees their results one
        by one) thus share each wait instead of adding theirs up."""
        now = self.clock()
        if self.since is None:
            self.since = now
            self._round_end = {}
            self.outages += 1
            self.log(f"paused: {err} -- not the candidate's fault; retrying with backoff for up to "
                     f"{self.limit_s:.0f} s")
            self.on_event("pause", {"what": err.what, "detail": err.detail[:500]})
        n = self._attempts[key] = self._attempts.get(key, 0) + 1
        if key is not None and n > self.max_attempts:  # None: a wait that is not a retry (a node to join)
            self._give_up(err, f"the same evaluation met it {n} times in a row")
        end = self._round(n, now)
        went_away = False
        while True:
            now = self.clock()
            if now - self.since >= self.limit_s:
                self._give_up(err, f"it lasted {now - self.since:.0f} s (limit {self.limit_s:.0f} s)")
            stop_at = min(end, self.since + self.limit_s)
            if probe is None:
                if stop_at > now:
                    self.sleep(stop_at - now)
                if self.clock() - self.since >= self.limit_s:
                    continue  # the limit passed while sleeping: give up at the loop's top
                return
            # With a probe, poll it through the wait: retry as soon as the engine answers *again*. An
            # engine that answers all along (the fault is elsewhere) gets the backoff, after a first
            # quick retry, so a lasting fault cannot burn every attempt within a second.
            if _answers(probe):
                if went_away or n == 1 or now >= stop_at:
                    return
            else:
                went_away = True
            if now >= stop_at:
                n += 1  # still away at the end of this round: wait the next, longer one
                end = self._round(n, now)
                continue
            self.sleep(min(PROBE_EVERY_S, stop_at - now))

    def _round(self, n: int, now: float) -> float:
        end = self._round_end.get(n)
        if end is None:
            end = self._round_end[n] = now + min(self.max_delay_s, self.first_s * 2 ** (n - 1))
        return end

    def ok(self, key: Hashable = None) -> None:
        """A job finished: the outage (if any) is over."""
        self._attempts.pop(key, None)
        self._attempts.pop(None, None)  # waits that were not retries (a node to join) end with any result
        if self.since is not None:
            took = self.clock() - self.since
            self.paused_s += took
            self.since = None
            self.log(f"resumed after a {took:.0f} s pause; nothing was lost")
            self.on_event("resume", {"paused_s": round(took, 3)})

    def _give_up(self, err: InfrastructureError, why: str) -> None:
        took = self.clock() - (self.since or self.clock())
        self.since = None
        self.paused_s += took
        self.on_event("infra_stop", {"what": err.what, "detail": err.detail[:500], "why": why})
        raise InfrastructureError(err.what, f"{err.detail} (not recovered: {why})")


def _answers(probe: Callable[[], bool]) -> bool:
    try:
        return bool(probe())
    except Exception:  # noqa: BLE001 - a probe that fails means "not yet"
        return False
