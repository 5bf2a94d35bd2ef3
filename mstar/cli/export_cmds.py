"""``mstar export``: a run's winner, a seed or a harness file as one standalone module for agents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mstar.errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        what: Annotated[str, typer.Argument(metavar="RUN_DIR|HARNESS|FILE",
                                            help="A run folder (its best.py), a seed name or a harness .py file.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="The module to write.")] = Path("my_memory.py"),
        force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
        sandbox: Annotated[str, typer.Option(help="Where the program's smoke test runs: auto, docker, process, inline.")] = "auto",
    ) -> None:
        """Write one standalone module: the program with its tuned knobs frozen, a default toolkit,
        persistence (open_memory) and LangChain / LangGraph adapters. It runs without mstar."""
        if out.suffix != ".py" or not out.stem.isidentifier():
            raise UsageError(f"--out {out}: expected a .py file whose name is a Python identifier, e.g. my_memory.py")
        if out.exists() and not force:
            raise UsageError(f"--out {out} exists: pass --force to overwrite it, or another --out")
        if not out.parent.resolve().is_dir():
            raise UsageError(f"--out {out}: the folder {out.parent} does not exist: create it first")
        from mstar.export.assemble import assemble
        from mstar.export.source import check

        src = check(what, sandbox=sandbox)
        text = assemble(src, module_name=out.stem)
        tmp = out.with_name(out.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(out)
        except OSError as e:
            raise UsageError(f"--out {out}: cannot write: {e.strerror}: choose a writable path") from None
        typer.echo(f"wrote {out} ({src.origin}; smoke test {src.smoke}); import it as: from {out.stem} import open_memory")
