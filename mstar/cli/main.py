"""The ``mstar`` command. Each group of commands lives in its own module with a ``register(app)``."""

from __future__ import annotations

import importlib
import sys

import typer

from mstar.errors import MstarError


def _flags_read_as_switches() -> None:
    """In --help, an on/off flag shows as ``--json``, not ``--json <bool>`` (typer >= 0.2x prints every
    option's type, switches included, and reads no setting for it). Display only: parsing is click's."""
    from typer.core import TyperOption

    show_type = getattr(TyperOption, "display_type_rich", None)
    if show_type is None or getattr(show_type, "mstar_switches", False):
        return

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202 - typer's own signature
        return None if getattr(self, "is_flag", False) else show_type(self, ctx)

    display_type_rich.mstar_switches = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_read_as_switches()

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
    "mstar.cli.review_cmds",
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
