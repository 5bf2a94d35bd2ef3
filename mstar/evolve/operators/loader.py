"""Operator names -> operator objects, through ``mstar.evolve.operators.registry``.

``EXTRA_OPERATORS`` lets a test (or a plugin) add an operator without touching the registry:
``EXTRA_OPERATORS["mine"] = MyOperator``. The registry's own API is adapted here so the engine and
the operators can be developed apart: a ``get_operator(name)`` function or an ``OPERATORS`` mapping
of names to classes (or factories, or instances).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from mstar.errors import UsageError

EXTRA_OPERATORS: dict[str, Any] = {}


def _instantiate(obj: Any) -> Any:
    return obj() if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "propose")) else obj


def load_operator(name: str) -> Any:
    if name in EXTRA_OPERATORS:
        return _instantiate(EXTRA_OPERATORS[name])
    try:
        reg = importlib.import_module("mstar.evolve.operators.registry")
    except ImportError:
        raise UsageError(f"--operators: operator {name!r} is not available (no operator registry installed)") from None
    getter = getattr(reg, "get_operator", None)
    if getter is not None:
        try:
            return _instantiate(getter(name))
        except (KeyError, ValueError) as e:
            raise UsageError(f"--operators: unknown operator {name!r} ({e})") from None
    table = getattr(reg, "OPERATORS", None) or getattr(reg, "REGISTRY", None) or {}
    if name not in table:
        known = ", ".join(sorted(set(table) | set(EXTRA_OPERATORS)))
        raise UsageError(f"--operators: unknown operator {name!r} (known: {known or 'none'})")
    return _instantiate(table[name])


def load_operators(names: Iterable[str]) -> dict[str, Any]:
    return {n: load_operator(n) for n in names}
