"""The ``mstar`` command. Each group of commands lives in its own module with a ``register(app)``."""

from __future__ import annotations

import importlib
import sys

import typer

from mstar.errors import MstarError

app = typer.Typer(
    name="mstar",
    help="Evolve memory harnesses for LLM agents, scored honestly on your task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = [
    "mstar.cli.sandbox_cmds",
    "mstar.cli.eval_cmds",
    "mstar.cli.evolve_cmds",
    "mstar.cli.export_cmds",
]

for _mod in _COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main() -> None:
    """Console entry point: user errors become one red line and exit code 2, never a traceback.

    In standalone mode click already turns its own usage errors into messages; our errors pass through.
    """
    try:
        app()
    except MstarError as e:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
