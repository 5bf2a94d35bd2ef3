"""``mstar report`` and ``mstar dashboard``: review a run as one HTML file, or live in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mstar.errors import UsageError


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="The run's directory (holds run.db).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write (default RUN_DIR/report.html).")] = None,
) -> None:
    """Write RUN_DIR/report.html: one self-contained page (no network) to open from disk or attach to a PR."""
    from rich.console import Console

    from mstar.report.render import write_report
    from mstar.report.source import RunReadError

    try:
        path, data = write_report(run_dir, out)
    except RunReadError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{out or run_dir / 'report.html'}: cannot write the report: {e.strerror or e}") from None
    run = data["run"]
    note = " (snapshot: the run is still going)" if run["status"] == "running" else ""
    Console().print(f"report: {path} · {len(data['programs'])} programs · {run['status']}{note} · "
                    f"{path.stat().st_size / 1e6:.2f} MB", highlight=False)


def dashboard_cmd(
    runs_dir: Annotated[Path, typer.Argument(help="Folder of runs (each a directory with run.db).")] = Path("runs"),
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port on 127.0.0.1 (0: any free port).")] = 8765,
) -> None:
    """Serve a live view of the runs under RUNS_DIR on 127.0.0.1 (read-only; never blocks a running evolve)."""
    from rich.console import Console

    from mstar.report.server import DashboardServer

    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir}: no such directory (pass the folder that holds your runs, e.g. runs/)")
    if (runs_dir / "run.db").is_file():
        raise UsageError(f"{runs_dir}: this is one run; pass the folder that holds it ({runs_dir.resolve().parent})")
    try:
        server = DashboardServer(runs_dir, port)
    except OSError as e:
        raise UsageError(f"--port {port}: cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None
    Console().print(f"mstar dashboard: {server.url} (runs in {server.root}); Ctrl-C stops it", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("dashboard")(dashboard_cmd)
