"""The task-suite protocol and the helpers every suite shares (DESIGN §5).

A suite is one file in this folder plus one line in ``registry.py``. It yields ``Episode`` objects for
a split; splits are made by episode, never by question inside an episode.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from mstar.episodes import Episode
from mstar.errors import DataError

SPLITS = ("train", "val", "test", "all")


class TaskSuite(Protocol):
    name: str
    description: str
    needs_data: bool

    def episodes(self, split: str = "all") -> list[Episode]:
        """The episodes of ``split`` (one of SPLITS); raises ``DataError`` / ``UsageError`` on bad input."""


def check_split(split: str) -> str:
    from mstar.errors import UsageError

    if split not in SPLITS:
        raise UsageError(f"--split: unknown split {split!r} (choose from {', '.join(SPLITS)})")
    return split


def resolve_data(data: str | Path | None, default_name: str, task: str) -> Path:
    """``--data`` wins, then ``$MSTAR_DATA``; either may be the file or a folder holding ``default_name``."""
    raw = data if data not in (None, "") else os.environ.get("MSTAR_DATA")
    if not raw:
        raise DataError(
            None,
            f"task {task!r} needs a data file: pass --data PATH or set MSTAR_DATA "
            f"(see `mstar tasks` for where to get {default_name})",
        )
    p = Path(raw).expanduser()
    if p.is_dir():
        p = p / default_name
    if not p.is_file():
        raise DataError(p, "no such file")
    return p


def read_json(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}") from None
    except OSError as e:
        raise DataError(path, f"cannot read: {e}") from None
