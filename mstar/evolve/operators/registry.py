"""Operator names -> operator classes (read by ``mstar.evolve.operators.loader``).

Each operator is imported only when asked for: optuna is heavy, and an LLM operator whose module is
missing or broken must not take the offline operators down with it. The failure is reported as a
``ValueError`` naming the operator and the import error (the loader turns it into a UsageError).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> "module:Class"
OPERATOR_PATHS: dict[str, str] = {
    "structural": "mstar.evolve.operators.structural:StructuralOperator",
    "tune": "mstar.evolve.operators.tune:TuneOperator",
    "llm_reflect": "mstar.evolve.operators.llm_reflect:LLMReflect",
    "llm_crossover": "mstar.evolve.operators.llm_crossover:LLMCrossover",
}


def names() -> list[str]:
    return sorted(OPERATOR_PATHS)


def get_operator(name: str) -> type[Any]:
    """The operator class registered as ``name``. KeyError for an unknown name, ValueError for one
    whose module cannot be imported."""
    if name not in OPERATOR_PATHS:
        raise KeyError(f"known operators: {', '.join(names())}")
    module_name, _, cls_name = OPERATOR_PATHS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # a broken operator module: say which, keep the others usable
        raise ValueError(f"operator {name!r} cannot be loaded from {module_name}: {type(e).__name__}: {e}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:  # renamed class: any class of the module that says it is this operator
        cls = next((v for v in vars(module).values()
                    if isinstance(v, type) and getattr(v, "name", None) == name and hasattr(v, "propose")), None)
    if cls is None:
        raise ValueError(f"operator {name!r}: {module_name} defines no {cls_name}")
    return cls
