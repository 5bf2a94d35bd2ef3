"""What a local Ray instance leaves behind when its mstar driver dies without shutting it down (kill -9,
the OOM killer), and how it is ended. Standard library only: the watchdog below runs it as a script.

Why it is needed (Ray 2.60, measured): gcs_server and raylet die with the driver (Ray starts them
with PR_SET_PDEATHSIG), but the raylet's two agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``)
notice the raylet's death and then first try to report it to the GCS, which is dead too; they wait on
that (``publish_error_to_driver``, 60 s timeout) or longer, and nothing removes the temp dir. Ray
starts both agents on every node whatever ``include_dashboard`` says, so they cannot be switched off.

Two lines of defence, both keyed on the instance's temp dir ``/tmp/mstar-ray-*``:
- a **watchdog** per instance (``spawn_watchdog``): a small process in its own session that blocks on a
  pipe whose only writer is the driver. End of file means the driver is gone, however it ended; the
  watchdog then kills the instance's processes and removes its dir, within about a second.
- a **sweep** at every start (``sweep``): temp dirs whose recorded driver is dead (the watchdog was
  killed too, the machine rebooted mid-run) are reaped the same way.

Ownership, so a user's own Ray is never touched: only dirs with the ``mstar-ray-`` prefix; the driver
is the one recorded in the dir (pid *and* its start time, so a reused pid does not look alive); and
only processes whose command line names the dir, or Ray processes (``ray::`` titles, which hide the
command line) holding a file open under it, plus their descendants (e.g. a process sandbox's runner).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path("/tmp")
PREFIX = "mstar-ray-"
MARKER = "mstar-driver.json"
UNMARKED_GRACE_S = 120.0  # a dir with no marker younger than this may be one being set up right now


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing one.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie has ended; only its parent has not collected it yet
    return int(fields[19])


def _alive(pid: int, start: int | None) -> bool:
    now = _start_time(pid)
    return now is not None and (start is None or now == start)


def record_driver(temp: str | Path, pid: int | None = None) -> None:
    """Write who owns ``temp``: a later sweep reaps the dir only once this process has ended."""
    pid = pid or os.getpid()
    path = Path(temp) / MARKER
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "start": _start_time(pid)}), encoding="utf-8")
    tmp.replace(path)  # atomic: a sweep never reads half a marker


def driver_dead(temp: Path) -> bool:
    """True only when the dir's driver has certainly ended; anything unclear counts as alive."""
    try:
        rec = json.loads((temp / MARKER).read_text(encoding="utf-8"))
        return not _alive(int(rec["pid"]), rec.get("start"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        return False
    # No marker: made by an mstar without markers, or being set up right now. Ray names its session
    # dir ``session_<date>_<time>_<driver pid>``; with no session dir, or a young dir, keep it.
    try:
        if time.time() - temp.stat().st_mtime < UNMARKED_GRACE_S:
            return False
        pids = [int(m.group(1)) for d in temp.iterdir() if (m := re.fullmatch(r"session_.*_(\d+)", d.name))]
    except OSError:
        return False
    return bool(pids) and not any(_alive(p, None) for p in pids)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _holds_file_under(pid: int, prefix: str) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            out.setdefault(ppid, []).append(int(d))
    return out


def processes_of(temp: str | Path) -> list[int]:
    """Live processes of the Ray instance in ``temp`` (and their descendants), never this process."""
    temp = str(Path(temp))
    needle, prefix = temp.encode(), temp + "/"
    me = {os.getpid(), os.getppid()}
    found: set[int] = set()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in me:
            continue
        cmd = _cmdline(int(d))
        if needle in cmd or (cmd.startswith(b"ray::") and _holds_file_under(int(d), prefix)):
            found.add(int(d))
    if found:
        kids = _children()
        todo = list(found)
        while todo:
            for c in kids.get(todo.pop(), []):
                if c not in found and c not in me:
                    found.add(c)
                    todo.append(c)
    return sorted(p for p in found if _start_time(p) is not None)


def reap(temp: str | Path, wait_s: float = 10.0) -> int:
    """Kill every process of the instance in ``temp``, wait for them to end, remove the dir.

    SIGKILL, not SIGTERM: the instance's driver is gone, nothing of it is worth a graceful exit, and a
    hung agent would ignore a polite request. Repeated until none is left, in case one was mid-spawn.
    Returns how many processes were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + wait_s
    while True:
        pids = processes_of(temp)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    shutil.rmtree(temp, ignore_errors=True)
    return len(killed)


def sweep(root: str | Path = ROOT) -> list[str]:
    """Reap every ``mstar-ray-*`` dir under ``root`` whose driver has ended; returns the dirs reaped."""
    done = []
    for temp in sorted(Path(root).glob(PREFIX + "*")):
        if temp.is_dir() and not temp.is_symlink() and driver_dead(temp):
            reap(temp)
            done.append(str(temp))
    return done


# --- the watchdog ----------------------------------------------------------------------------------
def spawn_watchdog(temp: str | Path) -> int:
    """Start the watchdog of ``temp``; returns the write end of its pipe, which the caller must keep
    open for as long as the instance runs (closing it, or exiting, makes the watchdog reap)."""
    r, w = os.pipe()  # both ends non-inheritable: Ray's and the sandboxes' children never hold ``w``
    try:
        subprocess.Popen([sys.executable, "-I", "-S", __file__, str(temp)], stdin=r, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, cwd="/", close_fds=True,
                         start_new_session=True)  # its own session: a Ctrl-C to the driver's group spares it
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    return w


def _watch(temp: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):  # the driver never writes; read returns b"" at end of file
        pass
    reap(temp)


if __name__ == "__main__":  # the watchdog: ``python ray_cleanup.py TEMP_DIR`` with the pipe as stdin
    _watch(sys.argv[1])
