"""Operator names -> operator factories: one plain mapping, ``OPERATORS``.

A factory is any zero-argument callable that returns an operator (a class is one). The built-in ones
import their module only when called: optuna is heavy, and an LLM operator whose module is missing or
broken must not take the offline operators down with it. A test or a plugin adds its own with
``OPERATORS["mine"] = MyOperator``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from mstar.errors import UsageError


def _lazy(module: str, cls: str) -> Callable[[], Any]:
    def make() -> Any:
        return getattr(importlib.import_module(module), cls)()

    make.__qualname__ = f"{module}:{cls}"
    return make


OPERATORS: dict[str, Callable[[], Any]] = {
    "structural": _lazy("mstar.evolve.operators.structural", "StructuralOperator"),
    "tune": _lazy("mstar.evolve.operators.tune", "TuneOperator"),
    "llm_reflect": _lazy("mstar.evolve.operators.llm_reflect", "LLMReflect"),
    "llm_crossover": _lazy("mstar.evolve.operators.llm_crossover", "LLMCrossover"),
}


def names() -> list[str]:
    return sorted(OPERATORS)


def load_operator(name: str) -> Any:
    """A fresh operator registered as ``name``; a UsageError naming it when it is unknown or its module
    does not load (the other operators stay usable)."""
    factory = OPERATORS.get(name)
    if factory is None:
        raise UsageError(f"--operators: unknown operator {name!r} (known: {', '.join(names())})")
    try:
        return factory()
    except Exception as e:  # a broken operator module: say which, keep the others usable
        raise UsageError(f"--operators: operator {name!r} cannot be loaded: {type(e).__name__}: {e}") from None


def load_operators(names: Iterable[str]) -> dict[str, Any]:
    return {n: load_operator(n) for n in names}
