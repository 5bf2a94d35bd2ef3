"""When a run stops: limits (generations, evaluations, minutes, USD, tokens, patience) and requests
(Ctrl-C, SIGTERM, a ``STOP`` file in the run directory).

A stop is graceful and bounded. A watcher thread notices a request or the time limit within a second,
whatever the engine is doing (an evaluation of a slow LLM harness can take many minutes). The engine
then stops starting work; evaluations in flight get ``StopConfig.stop_grace_s`` seconds (default 30)
to finish and be stored. After that the watcher interrupts the main thread (``StopNow``, only while it
waits on evaluations or on an operator's proposal -- a model writing a program can take minutes --
never inside a store write): what was in flight is dropped, not stored, and is
redone by ``--resume``. Then the final val/test step runs with its own time limit
(``StopConfig.final_minutes``, default 10: half for val, the rest for test); what it cannot finish is
skipped and the summary says so. So a stop ends the run within ``stop_grace_s`` + ``final_minutes`` +
a few seconds. A second Ctrl-C aborts at once (what it was doing is redone on ``--resume``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from mstar.evolve.core.config import StopConfig

STOP_FILE = "STOP"
_ABORT_SIGNAL = signal.SIGUSR1
POLL_S = 0.5


class StopNow(BaseException):  # noqa: N818 - a control-flow signal, like KeyboardInterrupt
    """Raised in the main thread by the watcher: the evaluations in flight are abandoned (not stored)."""


class Stopper:
    def __init__(self, limits: StopConfig, run_dir: Path):
        self.limits = limits
        self.run_dir = Path(run_dir)
        self.started = time.monotonic()
        self.requested: str | None = None
        self._old: dict[int, Any] = {}
        self._armed = 0  # > 0: the main thread waits on evaluations or a proposal: StopNow may be raised there
        self._fired = 0.0
        self.abort_at: float | None = None  # when the watcher interrupts what is in flight
        self.final_deadline: float | None = None  # set by the final step: its own time limit
        self.can_abort: Callable[[], bool] = lambda: True
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._main = threading.main_thread().ident

    # --- requests -----------------------------------------------------------------------------------
    def install(self) -> None:
        """Take over SIGINT/SIGTERM and start the watcher (main thread only; elsewhere the defaults
        stay and stops are seen between evaluations only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._on_signal)
        self._old[_ABORT_SIGNAL] = signal.signal(_ABORT_SIGNAL, self._on_abort)
        self._main = threading.get_ident()
        self._watch_stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="mstar-stop-watcher", daemon=True)
        self._watcher.start()

    def uninstall(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    @contextlib.contextmanager
    def abortable(self) -> Iterator[None]:
        """While the main thread waits on evaluations, a stop past its grace may abandon them."""
        self._armed += 1  # nested: a proposal's minibatch scoring inside the proposal
        try:
            yield
        finally:
            self._armed -= 1

    def _on_abort(self, signum: int, frame: FrameType | None) -> None:
        if self._armed > 0:
            raise StopNow

    def _watch(self) -> None:
        while not self._watch_stop.wait(POLL_S):
            now = time.monotonic()
            if self.requested is None:
                r = self._limit_reached()
                if r:
                    self.requested = r
            if self.final_deadline is not None:  # the final step: only its own time limit applies
                due = now >= self.final_deadline
            else:
                if self.requested is not None and self.abort_at is None:
                    self.abort_at = now + self.limits.stop_grace_s
                due = self.abort_at is not None and now >= self.abort_at
            # Once, then again only if the main thread is still armed 5 s later (cleanup runs in between).
            if due and self._armed > 0 and now - self._fired >= 5.0 and self.can_abort():
                self._fired = now
                try:
                    signal.pthread_kill(self._main, _ABORT_SIGNAL)
                except (OSError, ValueError):  # the main thread is gone: nothing to interrupt
                    return

    def _limit_reached(self) -> str | None:
        """The requests and limits that may end a run in the middle of an evaluation."""
        if self._stop_file():
            return f"stop file ({STOP_FILE})"
        lim = self.limits
        if lim.max_minutes is not None and self.minutes >= lim.max_minutes:
            return f"time limit ({lim.max_minutes:g} min)"
        return None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait
        self.requested = "interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)"

    def request(self, reason: str) -> None:
        self.requested = self.requested or reason

    def _stop_file(self) -> bool:
        f = self.run_dir / STOP_FILE
        if f.exists():
            # Honoured once: removed, so `--resume` goes on instead of stopping again.
            f.unlink(missing_ok=True)
            return True
        return False

    # --- limits -------------------------------------------------------------------------------------
    @property
    def minutes(self) -> float:
        return (time.monotonic() - self.started) / 60

    def reason(self, evaluations: int, spent_usd: float, spent_tokens: int = 0) -> str | None:
        """A reason to stop now (checked between evaluations), or None."""
        if self.requested:
            return self.requested
        if self._stop_file():
            self.requested = f"stop file ({STOP_FILE})"
            return self.requested
        lim = self.limits
        if lim.max_evals is not None and evaluations >= lim.max_evals:
            return f"evaluation limit ({lim.max_evals})"
        if lim.max_minutes is not None and self.minutes >= lim.max_minutes:
            return f"time limit ({lim.max_minutes:g} min)"
        if lim.budget_usd is not None and spent_usd >= lim.budget_usd:
            return f"budget spent (${spent_usd:.4f} of ${lim.budget_usd:g})"
        if lim.budget_tokens is not None and spent_tokens >= lim.budget_tokens:
            return f"token budget spent ({spent_tokens:,} of {lim.budget_tokens:,} tokens)"
        return None

    def at_generation_end(self, generation: int, stale_generations: int) -> str | None:
        """Limits that only make sense between generations."""
        lim = self.limits
        if lim.generations is not None and generation >= lim.generations:
            return f"generation limit ({lim.generations})"
        if lim.patience is not None and stale_generations >= lim.patience:
            return f"no improvement for {stale_generations} generations (patience {lim.patience})"
        return None
