"""``KNOBS``: a harness's tunable constants, declared as a plain dict literal (docs/ARCHITECTURE.md#harness-contract).

Example::

    KNOBS = {
        "top_k": {"type": "int", "low": 1, "high": 50, "default": 10},
        "k1": {"type": "float", "low": 0.5, "high": 2.0, "default": 1.2, "log": False},
        "mode": {"type": "cat", "choices": ["bm25", "dense"], "default": "bm25"},
        "use_dates": {"type": "bool", "default": True},
    }
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from mstar.errors import MstarError


class _Knob(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntKnob(_Knob):
    type: Literal["int"]
    low: int
    high: int
    default: int
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> IntKnob:
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} is outside [{self.low}, {self.high}]")
        return self

    def coerce(self, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v:
            raise ValueError(f"expected an integer, got {v!r}")
        v = int(v)
        if not self.low <= v <= self.high:
            raise ValueError(f"{v} is outside [{self.low}, {self.high}]")
        return v


class FloatKnob(_Knob):
    type: Literal["float"]
    low: float
    high: float
    default: float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatKnob:
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} is outside [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        return self

    def coerce(self, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"expected a number, got {v!r}")
        v = float(v)
        if not self.low <= v <= self.high:
            raise ValueError(f"{v} is outside [{self.low}, {self.high}]")
        return v


class CatKnob(_Knob):
    type: Literal["cat"]
    choices: list[str | int | float | bool] = Field(min_length=1)
    default: str | int | float | bool

    @model_validator(mode="after")
    def _check(self) -> CatKnob:
        if self.default not in self.choices:
            raise ValueError(f"default {self.default!r} is not one of {self.choices}")
        return self

    def coerce(self, v: Any) -> Any:
        if v not in self.choices:
            raise ValueError(f"{v!r} is not one of {self.choices}")
        return v


class BoolKnob(_Knob):
    type: Literal["bool"]
    default: bool

    def coerce(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError(f"expected true or false, got {v!r}")
        return v


KnobSpec = Annotated[IntKnob | FloatKnob | CatKnob | BoolKnob, Field(discriminator="type")]
_SPECS = TypeAdapter(dict[str, KnobSpec])


class KnobsError(MstarError, ValueError):
    """Raised with the knob's name in the message."""


def parse_knobs(raw: Any) -> dict[str, IntKnob | FloatKnob | CatKnob | BoolKnob]:
    """Validate a ``KNOBS`` literal. Raises ``KnobsError`` naming the knob and the field."""
    if not isinstance(raw, dict):
        raise KnobsError(f"KNOBS must be a dict, got {type(raw).__name__}")
    for name in raw:
        if not isinstance(name, str) or not name.isidentifier():
            raise KnobsError(f"KNOBS key {name!r} must be an identifier string")
    try:
        return _SPECS.validate_python(raw)
    except ValidationError as e:
        err = e.errors()[0]
        parts = [str(p) for p in err["loc"]]
        # pydantic puts the discriminator tag ("int", "cat" ...) after the knob name; users never wrote it.
        if len(parts) > 1 and parts[1] in ("int", "float", "cat", "bool"):
            del parts[1]
        field = f".{'.'.join(parts[1:])}" if len(parts) > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        raise KnobsError(f"KNOBS[{parts[0]}]{field}: {msg}") from None


def defaults(specs: dict[str, Any]) -> dict[str, Any]:
    return {k: s.default for k, s in specs.items()}


def resolve(specs: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults with ``overrides`` applied; an unknown knob or an out-of-range value is an error."""
    values = defaults(specs)
    for k, v in (overrides or {}).items():
        if k not in specs:
            raise KnobsError(f"unknown knob {k!r} (known: {', '.join(sorted(specs)) or 'none'})")
        try:
            values[k] = specs[k].coerce(v)
        except ValueError as e:
            raise KnobsError(f"knob {k!r}: {e}") from None
    return values
