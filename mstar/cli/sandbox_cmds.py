"""``mstar sandbox build`` and ``mstar doctor``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from mstar.errors import UsageError

sandbox_app = typer.Typer(help="The sandbox image candidates run in (docs/ARCHITECTURE.md#sandbox).", no_args_is_help=True)


@sandbox_app.command("build")
def build_cmd(
    base: Annotated[str | None, typer.Option("--base", help="Base image with python3 (pulled when missing).")] = None,
    local_base: Annotated[bool, typer.Option("--local-base", help="Build the base from Debian packages "
                                             "(debootstrap + docker import): no registry needed.")] = False,
    wheelhouse: Annotated[Path | None, typer.Option("--wheelhouse", help="Take the wheels from this directory "
                                                    "instead of PyPI.")] = None,
    mirror: Annotated[str | None, typer.Option("--mirror", help="Debian mirror for --local-base.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the current image exists.")] = False,
) -> None:
    """Build the sandbox image, tagged mstar-sandbox:<version>-<content hash>."""
    from rich.console import Console

    from mstar.sandbox.docker_backend import docker_client
    from mstar.sandbox.image import DEBIAN_MIRROR, build_image

    if base and local_base:
        raise UsageError("--base and --local-base: choose one")
    if wheelhouse is not None and not wheelhouse.is_dir():
        raise UsageError(f"--wheelhouse {wheelhouse}: not a directory")
    try:
        client = docker_client()
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"no Docker engine answers ({e}): start dockerd (sudo dockerd &) and retry") from None
    console = Console(stderr=True)
    t0 = time.perf_counter()
    tag = build_image(client, base=base, local_base=local_base, wheelhouse=wheelhouse,
                      log=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True),
                      mirror=mirror or DEBIAN_MIRROR, force=force)
    console.print(f"[green]ok[/] {tag} ({time.perf_counter() - t0:.0f}s)")
    print(tag)


def doctor_cmd(
    model: Annotated[str | None, typer.Option("--model", help="Check this litellm model (else $MSTAR_MODEL).")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Base URL of an OpenAI-compatible server.")] = None,
) -> None:
    """Check what mstar needs: Docker engine, sandbox image, the backend `auto` picks, data, model."""
    from rich.console import Console
    from rich.table import Table

    from mstar.sandbox.doctor import run_checks

    t = Table(title="mstar doctor", title_justify="left")
    for c in ("check", "status", "detail", "fix"):
        t.add_column(c, overflow="fold")
    style = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "missing": "[red]missing[/]"}
    for c in run_checks(model, api_base):
        t.add_row(c.name, style.get(c.status, c.status), c.detail, c.fix)
    # Wide when piped (logs, CI): folded cells are hard to read and to grep.
    Console(width=None if sys.stdout.isatty() else 160).print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
    app.command("doctor")(doctor_cmd)
