"""Name -> task suite. Adding a suite: one file in tasks/ and one line here."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mstar.errors import UsageError

TASKS: dict[str, str] = {
    "locomo": "mstar.tasks.locomo:LocomoTask",
    "longmemeval": "mstar.tasks.longmemeval:LongMemEvalTask",
    "synthetic": "mstar.tasks.synthetic:SyntheticTask",
}


def _cls(name: str) -> Any:
    if name not in TASKS:
        raise UsageError(f"--task: unknown task {name!r} (choose from {', '.join(sorted(TASKS))})")
    mod, _, attr = TASKS[name].partition(":")
    return getattr(importlib.import_module(mod), attr)


def get_task(name: str, data: str | Path | None = None, **options: Any):
    """Build a suite. ``options`` are suite-specific (e.g. synthetic's size and seed)."""
    return _cls(name)(data=data, **options)


def describe_tasks() -> list[dict[str, Any]]:
    out = []
    for name in sorted(TASKS):
        cls = _cls(name)
        out.append({"name": name, "description": cls.description, "needs_data": cls.needs_data,
                    "data_hint": getattr(cls, "data_hint", "")})
    return out
