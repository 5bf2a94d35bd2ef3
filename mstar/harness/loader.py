"""Find, read, check and load harness programs: by seed name or by file path."""

from __future__ import annotations

import hashlib
import importlib.resources
import types
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from mstar.errors import HarnessError
from mstar.harness.static import StaticInfo, check_source


def seeds_dir() -> Path:
    return Path(str(importlib.resources.files("mstar.harnesses")))


def seed_names() -> list[str]:
    return sorted(p.stem for p in seeds_dir().glob("*.py") if not p.stem.startswith("_"))


class HarnessProgram(BaseModel):
    """A checked harness: its source and what the static checks found. The unit evolution works on."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    path: str
    source: str
    knob_specs: dict[str, Any]
    needs_llm: bool
    docstring: str
    methods: list[str]
    instructions: str = ""

    @property
    def hash(self) -> str:
        return program_hash(self.source)

    @property
    def summary(self) -> str:
        return self.docstring.strip().splitlines()[0] if self.docstring.strip() else ""


def program_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def from_source(source: str, name: str = "candidate", path: str = "<candidate>") -> HarnessProgram:
    info: StaticInfo = check_source(source, path)
    return HarnessProgram(
        name=name,
        path=path,
        source=source,
        knob_specs=info.knobs,
        needs_llm=info.needs_llm,
        docstring=info.docstring,
        methods=sorted(info.methods),
        instructions=info.instructions,
    )


def resolve_path(spec: str | Path) -> tuple[str, Path]:
    """A seed name (``bm25``) or a path to a ``.py`` file -> (name, path)."""
    s = str(spec)
    p = Path(s)
    if s.endswith(".py") or p.exists() or "/" in s:
        if not p.is_file():
            raise HarnessError(s, "no such harness file")
        return p.stem, p
    candidate = seeds_dir() / f"{s}.py"
    if candidate.is_file() and not s.startswith("_"):
        return s, candidate
    raise HarnessError(s, f"unknown harness: not a file and not a seed (seeds: {', '.join(seed_names())})")


def load_program(spec: str | Path) -> HarnessProgram:
    name, path = resolve_path(spec)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HarnessError(path, f"cannot read: {e}") from None
    return from_source(source, name=name, path=str(path))


def load_module(source: str, path: str = "<harness>", name: str = "harness") -> types.ModuleType:
    """Execute a harness source as a fresh module (never inserted in sys.modules)."""
    module = types.ModuleType(f"mstar_harness_{name}")
    module.__file__ = path
    code = compile(source, path, "exec")
    exec(code, module.__dict__)  # noqa: S102 - this is what loading a program means
    instr = getattr(module, "INSTRUCTIONS", None)
    if not isinstance(instr, str):
        raise HarnessError(path, "INSTRUCTIONS must be a str")
    return module
