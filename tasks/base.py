"""The task-suite protocol and the helpers every suite shares (docs/ARCHITECTURE.md#tasks).

A suite is one file in this folder plus one line in ``registry.py``. It yields ``Episode`` objects for
a split; splits are made by episode, never by question inside an episode.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any, Protocol

from mstar.episodes import Episode
from mstar.errors import DataError


def hash_unit(key: str, salt: str = "") -> float:
    """A stable number in [0, 1) for ``key`` (sha256, so it is the same on every machine and Python)."""
    h = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


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


# Where a task's data file is looked for when neither --data nor $MSTAR_DATA names it, relative to the
# current directory: a data/ folder of your own, then the shared data folder of a checkout next to it.
DEFAULT_DATA_DIRS = ("data", "../shared/data")


def _label(d: str) -> str:
    return f"{d}/" if d.startswith(".") else f"./{d}/"


DATA_RULE = ("--data PATH (a file, plain or gzipped .json.gz, or a folder holding the task's file), else $MSTAR_DATA, else the first of "
             + " and ".join(_label(d) for d in DEFAULT_DATA_DIRS) + " (from the current directory) holding it")


def find_data(data: str | Path | None, default_name: str) -> tuple[Path, str]:
    """The one lookup rule (``DATA_RULE``), shared by the suites and ``mstar doctor``.

    Returns (path, where it came from). The path may not exist when --data or $MSTAR_DATA named it:
    an explicit choice is never replaced by a default; the caller reports it."""
    for raw, how in ((data, "--data"), (os.environ.get("MSTAR_DATA"), "$MSTAR_DATA")):
        if raw not in (None, ""):
            p = Path(raw).expanduser()
            return (_in_folder(p, default_name) if p.is_dir() else p), how
    for d in DEFAULT_DATA_DIRS:
        p = _in_folder(Path(d), default_name)
        if p.is_file():
            return p, _label(d)
    return Path(default_name), ""


def _in_folder(folder: Path, name: str) -> Path:
    """``folder/name``, or its gzipped copy ``folder/name.gz`` when only that one is there."""
    plain, packed = folder / name, folder / (name + ".gz")
    return packed if not plain.is_file() and packed.is_file() else plain


def resolve_data(data: str | Path | None, default_name: str, task: str) -> Path:
    """The data file of ``task`` by ``DATA_RULE``; a ``DataError`` naming the flag or the file when absent."""
    p, how = find_data(data, default_name)
    if not how:
        raise DataError(
            None,
            f"task {task!r} needs {default_name}: pass --data PATH or set MSTAR_DATA (nor was it in "
            f"{' or '.join(_label(d) for d in DEFAULT_DATA_DIRS)}; see `mstar tasks` for where to get it)",
        )
    if not p.is_file():
        raise DataError(p, f"no such file (from {how})")
    return p


GZIP_MAGIC = b"\x1f\x8b"


def read_json(path: Path) -> Any:
    """The JSON document in ``path``, plain or gzipped (told by the file's first two bytes, whatever its
    name says: a ``.json.gz`` that is not gzip, or a gzip named ``.json``, both read or fail by content)."""
    try:
        with path.open("rb") as f:
            packed = f.read(2) == GZIP_MAGIC
        if not packed and path.name.endswith(".gz"):
            raise DataError(path, "not a gzip file (the name ends in .gz but the content is not gzip-compressed)")
        with (gzip.open(path, "rb") if packed else path.open("rb")) as f:
            return json.load(f)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(path, f"corrupt gzip file: {e or 'it ends early (truncated)'}") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text: {e}") from None
    except OSError as e:
        raise DataError(path, f"cannot read: {e}") from None
