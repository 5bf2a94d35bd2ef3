"""A cgroup per ``process`` session, where we may make one (root, or a delegated cgroup tree).

Why: the kernel never applies ``RLIMIT_NPROC`` to root (uid 0 is exempt even without capabilities), so
a fork bomb run by a root host is stopped only by a pids cgroup. The memory cgroup also bounds resident
memory (``RLIMIT_AS`` bounds address space, which is looser), and the cpu controller gives the whole
process tree one CPU quota (``SessionLimits.cpus``): rlimits are per process. Supports cgroup v2 (unified) and v1.
The child process puts itself in the group between fork and exec; its descendants inherit it.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from mstar.sandbox.base import SessionLimits

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
PARENT = "mstar"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Cgroup:
    def __init__(self, dirs: list[Path]):
        self.dirs = dirs
        self.procs = [str(d / "cgroup.procs") for d in dirs]

    def enter(self) -> None:
        """Run in the child before exec: move this process into every group (plain syscalls only)."""
        pid = str(os.getpid())
        for p in self.procs:
            fd = os.open(p, os.O_WRONLY)
            try:
                os.write(fd, pid.encode())
            finally:
                os.close(fd)

    def pids(self) -> list[int]:
        """Every process in the group (to kill them all, whatever session or group they moved to)."""
        out: set[int] = set()
        for p in self.procs:
            try:
                with open(p) as f:
                    out.update(int(x) for x in f.read().split())
            except (OSError, ValueError):
                pass
        return sorted(out)

    def remove(self, wait_s: float = 2.0) -> None:
        """Remove the groups once their processes are gone (rmdir fails while any is left)."""
        end = time.monotonic() + wait_s
        for d in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > end:
                        break
                    time.sleep(0.02)


def _v2_parent() -> Path | None:
    if not (ROOT / "cgroup.controllers").is_file():
        return None
    parent = ROOT / PARENT
    try:
        parent.mkdir(exist_ok=True)
        enabled = (ROOT / "cgroup.subtree_control").read_text().split()
        if "pids" not in enabled:
            return None
        _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in ("pids", "memory", "cpu") if c in enabled))
    except OSError:
        return None
    return parent


def _sweep(parent: Path) -> None:
    """Remove empty groups left by hosts that died (named after their pid)."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for d in entries:
        if d.is_dir() and d.name.startswith("s-"):
            try:
                os.kill(int(d.name.split("-")[1]), 0)
            except (ProcessLookupError, ValueError, IndexError):
                try:
                    d.rmdir()
                except OSError:
                    pass
            except PermissionError:
                pass


def _quota_us(limits: SessionLimits) -> int:
    """CPU time per period for the whole process tree: ``limits.cpus`` cores' worth, at least 1 ms."""
    return max(1000, int(limits.cpus * PERIOD_US))


def controllers(group: Cgroup | None) -> list[str]:
    """The controllers a group really has (for ``mstar doctor``): among pids, memory, cpu."""
    if group is None:
        return []
    files = {"pids": ("pids.max",), "memory": ("memory.max", "memory.limit_in_bytes"),
             "cpu": ("cpu.max", "cpu.cfs_quota_us")}
    return sorted(c for c, fs in files.items() if any((d / f).exists() for d in group.dirs for f in fs))


def create(limits: SessionLimits) -> Cgroup | None:
    """A fresh group with the session's pids, memory and CPU limits, or None where we may not make one."""
    name = f"s-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    mem = str(limits.memory_mb * 1024 * 1024)
    made: list[Path] = []
    try:
        v2 = _v2_parent()
        if v2 is not None:
            _sweep(v2)
            d = v2 / name
            d.mkdir()
            made.append(d)
            _write(d / "pids.max", str(limits.pids))
            if (d / "memory.max").exists():
                _write(d / "memory.max", mem)
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
            if (d / "cpu.max").exists():
                _write(d / "cpu.max", f"{_quota_us(limits)} {PERIOD_US}")
            return Cgroup(made)
        if not (ROOT / "pids" / "cgroup.procs").is_file():
            return None
        for ctrl in ("pids", "memory", "cpu"):
            parent = ROOT / ctrl / PARENT
            if not (ROOT / ctrl).is_dir():
                continue
            parent.mkdir(exist_ok=True)
            _sweep(parent)
            d = parent / name
            d.mkdir()
            made.append(d)
            if ctrl == "pids":
                _write(d / "pids.max", str(limits.pids))
            elif ctrl == "cpu":
                _write(d / "cpu.cfs_period_us", str(PERIOD_US))
                _write(d / "cpu.cfs_quota_us", str(_quota_us(limits)))
            else:
                _write(d / "memory.limit_in_bytes", mem)
                try:
                    _write(d / "memory.memsw.limit_in_bytes", mem)  # only with swap accounting on
                except OSError:
                    pass
        return Cgroup(made)
    except OSError:
        Cgroup(made).remove(0)
        return None
