"""What a person watching a run sees: a live rich panel on a terminal, plain log lines otherwise.

The live panel (``rich.live``) shows the generation, best and median train score, evaluations per
minute, LLM tokens and USD, the Pareto archive size and the last operators' outcomes. With
``--quiet``, or when the output is not a terminal (CI, a pipe, a log file), the same facts come as
one plain line per event on stderr, so stdout stays clean for ``--json``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

OUTCOME_STYLE = {"accepted": "green", "rejected-novelty": "yellow", "rejected-cascade": "yellow", "failed": "red",
                 "pending": "dim"}


@dataclass
class Snapshot:
    run_id: str = ""
    task: str = ""
    metric: str = ""
    phase: str = "starting"
    generation: int = 0
    best: float | None = None
    best_id: str = ""
    median: float | None = None
    evaluations: int = 0
    tokens: int = 0
    usd: float = 0.0
    archive: int = 0
    islands: list[int] = field(default_factory=list)
    stop: str = ""


class View:
    def __init__(self, live: bool | None = None, stream: TextIO | None = None, history: int = 8):
        self.stream = stream or sys.stderr
        self.live_mode = sys.stdout.isatty() if live is None else live
        self.snap = Snapshot()
        self.outcomes: deque[tuple[str, str, str, str]] = deque(maxlen=history)
        self._ticks: deque[float] = deque(maxlen=2000)
        self._live: Any = None
        self._console: Any = None

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self, to_stderr: bool = False) -> None:
        if not self.live_mode:
            return
        from rich.console import Console
        from rich.live import Live

        self._console = Console(stderr=to_stderr)
        self._live = Live(get_renderable=self._render, console=self._console, refresh_per_second=4,
                          transient=False, redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    # --- inputs from the engine ---------------------------------------------------------------------
    def tick(self) -> None:
        """One evaluation finished."""
        self._ticks.append(time.monotonic())

    @property
    def evals_per_min(self) -> float:
        now = time.monotonic()
        recent = [t for t in self._ticks if now - t <= 60]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-6)
        return len(recent) / span * 60

    def update(self, **kw: Any) -> None:
        for k, v in kw.items():
            setattr(self.snap, k, v)

    def outcome(self, tag: str, operator: str, outcome: str, reason: str) -> None:
        self.outcomes.append((tag, operator, outcome, reason))
        if not self.live_mode:
            self.log(f"{tag:>7} {operator:<14} {outcome:<17} {reason}")

    def log(self, line: str) -> None:
        if self._live is not None:
            from rich.text import Text

            # A Text, not markup=False: the print's render options also apply to the panel that Live
            # redraws below the line, whose cells would then show their markup raw ("[bold]seeds[/]").
            self._console.print(Text(line))
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {line}", file=self.stream, flush=True)

    def status_line(self) -> str:
        s = self.snap
        best = f"{s.best:.4f}" if s.best is not None else "-"
        med = f"{s.median:.4f}" if s.median is not None else "-"
        return (f"gen {s.generation} | best {best} ({s.best_id}) | median {med} | evals {s.evaluations} "
                f"({self.evals_per_min:.0f}/min) | archive {s.archive} | tokens {s.tokens} | ${s.usd:.4f}")

    # --- rendering ----------------------------------------------------------------------------------
    def _render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        s = self.snap
        head = Table.grid(padding=(0, 2))
        for _ in range(4):
            head.add_column()

        def fmt(v: float | None) -> str:
            return f"{v:.4f}" if v is not None else "-"

        head.add_row("phase", f"[bold]{s.phase}[/]", "generation", f"[bold]{s.generation}[/]")
        head.add_row(f"best {s.metric}", f"[bold green]{fmt(s.best)}[/] {s.best_id}", "median", fmt(s.median))
        head.add_row("evaluations", f"{s.evaluations} ({self.evals_per_min:.0f}/min)", "archive", str(s.archive))
        head.add_row("LLM tokens", str(s.tokens), "USD", f"{s.usd:.4f}")
        head.add_row("islands", " ".join(str(n) for n in s.islands) or "-", "stop", s.stop or "-")
        ops = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
        for c in ("slot", "operator", "outcome", "why"):
            ops.add_column(c, overflow="ellipsis", no_wrap=True, max_width=70 if c == "why" else None)
        for tag, op, outcome, reason in self.outcomes:
            ops.add_row(tag, op, f"[{OUTCOME_STYLE.get(outcome, 'white')}]{outcome}[/]", reason)
        return Panel(Group(head, ops), title=f"mstar evolve {s.run_id} · {s.task}", title_align="left")
