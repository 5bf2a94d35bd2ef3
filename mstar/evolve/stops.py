"""When a run stops: limits (generations, evaluations, minutes, USD, patience) and requests (Ctrl-C,
SIGTERM, a ``STOP`` file in the run directory).

A stop is always graceful: the engine asks ``Stopper.reason()`` between evaluations (never in the
middle of one), stops consuming work, records what finished, runs the final val/test step and writes
the summary. A second Ctrl-C aborts at once (what it was doing is redone on ``--resume``).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from mstar.evolve.config import StopConfig

STOP_FILE = "STOP"


class Stopper:
    def __init__(self, limits: StopConfig, run_dir: Path):
        self.limits = limits
        self.run_dir = Path(run_dir)
        self.started = time.monotonic()
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    # --- requests -----------------------------------------------------------------------------------
    def install(self) -> None:
        """Take over SIGINT/SIGTERM (main thread only; elsewhere the defaults stay)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: e.g. the engine driven from a worker thread
                pass

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

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
