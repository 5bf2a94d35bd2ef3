"""The ``process`` backend: ``sandbox/runner.py`` as a subprocess, for machines without Docker.

Isolation, strongest first (probed once; ``mstar doctor`` lists what is active):
- ``bwrap`` (bubblewrap, see ``mstar/sandbox/bwrap.py``): a mount namespace showing only the interpreter,
  the allow-listed packages and the runner, read-only, plus a private tmpfs /tmp; no host file or socket;
  new network / pid / ipc namespaces; an unprivileged uid with no capabilities; an empty environment.
  This is the only level ``--sandbox auto`` accepts.
- fallback without bwrap: util-linux ``unshare`` (network, pid and mount namespaces with every mount
  remounted read-only) and ``setpriv`` (capabilities dropped). The host's files stay *readable*, the uid
  is the host's: a weak sandbox, used only when asked for by name, with a warning naming what is missing.
Always: a cgroup (pids, memory, and a CPU quota for the whole process tree) where we may make one;
rlimits (address space, processes, CPU seconds, file size, open files, no core); a new session whose
process group is killed in ``close()``.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from mstar.errors import CandidateFailure
from mstar.sandbox import bwrap, cgroup
from mstar.sandbox.base import HASH_SEED, PYTHON_FLAGS, SessionLimits
from mstar.sandbox.cgroup import Cgroup
from mstar.sandbox.channel import Conn, LineBuffer, Tail
from mstar.sandbox.rpc import PooledBackend
from mstar.sandbox.warm import DEPTH, WarmPool

# Runs inside the new mount namespace, before the runner: every mount read-only, a tmpfs as cwd.
# Mount points in /proc/self/mountinfo escape blanks as \040; printf %b undoes that.
_MOUNT_SETUP = r"""
while read -r _ _ _ _ mp _; do
  mp=$(printf '%b' "$mp")
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done < /proc/self/mountinfo
mount -t tmpfs -o "size=$MSTAR_TMP_MB"m,mode=1777,nosuid,nodev tmpfs "$PWD" || exit 97
cd "$PWD" || exit 97
unset MSTAR_TMP_MB OLDPWD PWD
exec "$@"
"""
TMP_MB = 256
# Niceness of a warm spare while it starts (0: normal). A high one starves it on a busy machine, and the
# next episode then waits for its imports (measured; see mstar/sandbox/warm.py).
SPARE_NICE = 0


def runner_path() -> Path:
    """``sandbox/runner.py`` of this checkout (the package is installed editable from the repo)."""
    p = Path(__file__).resolve().parents[2] / "sandbox" / "runner.py"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: the sandbox runner is missing (mstar must run from its source tree)")
    return p


def _ns_prefix(unshare: str) -> list[str]:
    args = [unshare, "--mount", "--propagation", "private", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if os.geteuid() != 0:
        args[1:1] = ["--user", "--map-root-user"]
    return args + ["--", "sh", "-c", _MOUNT_SETUP, "mstar-sandbox"]


FULL = "bwrap"


def protections() -> list[tuple[str, str, bool]]:
    """(protection, what it means, active) for ``mstar doctor``: what the process sandbox gives here."""
    _, desc = isolation()
    full = desc.startswith(FULL)
    ns = full or desc.startswith("namespaces")
    cg = cgroup.create(SessionLimits())
    ctrls = cgroup.controllers(cg)
    if cg is not None:
        cg.remove(0)
    return [("files", "only the interpreter, the allow-list and the runner (read-only) + a private /tmp", full),
            ("sockets", "own network namespace, no socket files: no network, no Docker / Ray / X11", full),
            ("processes", "own pid namespace: host processes and their environments invisible", ns),
            ("uid", f"unprivileged uid {bwrap.SANDBOX_UID}, no capabilities", full),
            ("environment", "empty (but PYTHONHASHSEED=0)", True),
            ("pids", "cgroup pids limit (fork bombs)", "pids" in ctrls),
            ("memory", "cgroup memory limit", "memory" in ctrls),
            ("cpu", "cgroup CPU quota for the whole process tree", "cpu" in ctrls),
            ("rlimits", "memory, CPU seconds, files, processes", True)]


def missing_for_full() -> str | None:
    """None when the full (bwrap) process sandbox runs here; else what is missing and how to fix it."""
    why = bwrap.probe()
    return None if why is None else f"{why}; fix: apt-get install bubblewrap (and allow user namespaces as non-root)"


@lru_cache(maxsize=1)
def isolation() -> tuple[tuple[str, ...], str]:
    """(command prefix, description) of the strongest isolation this machine permits; probed once.
    With bwrap the prefix is empty: ``ProcessBackend.command`` builds the whole argv (bwrap.command)."""
    if bwrap.probe() is None:
        return (), FULL + ": own mount namespace (interpreter + allow-list only), no network, own pid namespace, " \
                          f"uid {bwrap.SANDBOX_UID}, no capabilities" + _cg_note()
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    drop = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"] if setpriv else []
    notes = []
    if unshare:
        prefix = _ns_prefix(unshare) + drop
        with tempfile.TemporaryDirectory(prefix="mstar-probe-") as d:
            probe = subprocess.run([*prefix, "true"], cwd=d, env=_env(d), capture_output=True, timeout=30)
        if probe.returncode == 0:
            return tuple(prefix), ("namespaces (net, pid, mount: read-only root, host files READABLE) + dropped "
                                   "capabilities" + _cg_note() + f"; {bwrap.probe()}")
        notes.append(f"unshare not permitted ({probe.stderr.decode(errors='replace').strip()[:200]})")
    else:
        notes.append("unshare not found (util-linux)")
    if drop:
        return tuple(drop), "dropped capabilities only" + _cg_note() + "; " + "; ".join(notes)
    return (), "rlimits only" + _cg_note() + "; " + "; ".join(notes)


def _cg_note() -> str:
    cg = cgroup.create(SessionLimits())
    if cg is None:
        return "" if os.geteuid() != 0 else " (no cgroup: a fork bomb is bounded only by the deadline)"
    names = cgroup.controllers(cg)
    cg.remove(0)
    return f" + cgroup ({', '.join(names)})"


def warn_if_weak() -> None:
    _, desc = isolation()
    if not desc.startswith(FULL):
        print(f"[mstar] warning: weak process sandbox (host files readable, host uid): {desc}", file=sys.stderr)


def _env(cwd: str) -> dict[str, str]:
    # Nothing of the host's environment: no keys, no proxies, no PYTHON* settings.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": cwd, "TMPDIR": cwd,
            "MSTAR_TMP_MB": str(TMP_MB), "PYTHONHASHSEED": HASH_SEED}


def _uid_tasks(uid: int) -> int:
    """Threads the user runs now: RLIMIT_NPROC counts them all, machine-wide."""
    n = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(b":", 1) for line in status.splitlines() if b":" in line)
        if int(fields.get(b"Uid", b"-1 0").split()[0]) == uid:
            n += int(fields.get(b"Threads", b"1").strip() or 1)
    return n


def _limiter(limits: SessionLimits, nproc: int, nice: int = 0, cg: Cgroup | None = None):
    mem = limits.memory_mb * 1024 * 1024
    cpu = int(limits.episode_timeout_s) + 5

    def apply() -> None:  # runs in the child between fork and exec: keep it to plain syscalls
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if nice:
            os.nice(nice)
        if cg is not None:
            cg.enter()

    return apply


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


class ProcessTransport:
    def __init__(self, argv: list[str], cwd: str, limits: SessionLimits, spare: bool = False, full: bool = False):
        self.cwd = cwd
        self.niced = spare and SPARE_NICE > 0 and os.geteuid() == 0
        self.stderr = Tail()
        # RLIMIT_NPROC counts the runner's uid machine-wide: under bwrap as root that is the sandbox uid.
        uid = bwrap.SANDBOX_UID if full and os.geteuid() == 0 else os.getuid()
        nproc = _uid_tasks(uid) + limits.pids + 8  # +8: unshare, sh, setpriv on the way in
        self.cg = cgroup.create(limits)  # root is exempt from RLIMIT_NPROC: a pids cgroup bounds it
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=cwd, env=_env(cwd), start_new_session=True, bufsize=0, close_fds=True,
                                     preexec_fn=_limiter(limits, nproc, SPARE_NICE if self.niced else 0, self.cg))  # noqa: PLW1509 - rlimits need it
        lines = LineBuffer(limits.max_reply_bytes)
        self.conn = Conn(self.proc.stdin.fileno(),
                         {self.proc.stdout.fileno(): lines.feed, self.proc.stderr.fileno(): self.stderr.feed}, lines)
        self._killed = False
        self._cpu_limit_s = int(limits.episode_timeout_s) + 5  # RLIMIT_CPU, as _limiter sets it

    def reusable(self) -> bool:
        """Fit for another session: RLIMIT_CPU counts the runner's whole life, so a reused runner that has
        spent half of it is retired (else an innocent later episode would die of SIGXCPU). Unknown: no."""
        used = self._cpu_s()
        return used is not None and used < self._cpu_limit_s / 2

    def _cpu_s(self) -> float | None:
        """CPU seconds of the busiest process on the chain unshare -> (sh ->) python (each has one child)."""
        tick = os.sysconf("SC_CLK_TCK")
        pid, most = self.proc.pid, None
        for _ in range(6):  # bwrap, its pid-1 child, (setpriv ->) python
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
                with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
                    kids = f.read().split()
            except (OSError, IndexError, ValueError):
                return None
            most = cpu if most is None else max(most, cpu)
            if len(kids) != 1:
                break
            pid = int(kids[0])
        return most

    def alive(self) -> bool:
        return self.proc.poll() is None and self.conn.quiet()

    def activate(self) -> None:
        """A spare becomes a session: back to normal priority (spares are niced only when we are root,
        because only root may lower a niceness again)."""
        if self.niced:
            self.niced = False
            try:
                os.setpriority(os.PRIO_PGRP, self.proc.pid, 0)
            except OSError:
                pass

    def close_input(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def exit_reason(self, wait_s: float) -> tuple[str, str] | None:
        try:
            rc = self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None
        self.conn.drain_stderr(0.5)  # the rest of stderr, for the detail
        # unshare --fork re-raises its child's fatal signal or exits 128 + signal.
        sig = -rc if rc < 0 else rc - 128 if rc > 128 else 0
        if sig == signal.SIGKILL:
            return "oom", "the runner was killed with SIGKILL (out of memory)"
        if sig == signal.SIGXCPU:
            return "timeout", "the runner used up its CPU-time limit"
        if sig:
            return "crash", f"the runner died of signal {signal.Signals(sig).name}"
        return "crash", f"the runner exited with status {rc} without a reply"

    def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        # The runner may have left our process group (setsid): kill what no group reaches first. The
        # children of the process we started (bwrap's pid-namespace init, or unshare's child): when a
        # namespace's init dies the kernel kills everything in it. Then every process of the cgroup.
        for pid in [*_children(self.proc.pid), *(self.cg.pids() if self.cg is not None else [])]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait on the process
            pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        if self.cg is not None:
            self.cg.remove()
        shutil.rmtree(self.cwd, ignore_errors=True)


class ProcessBackend(PooledBackend):
    name = "process"

    def __init__(self, guard: bool = True, warm: bool = True, warn: bool = True, reuse: bool = True,
                 spares: int = DEPTH):
        self.guard = guard
        self.pool = WarmPool(self._start, enabled=warm, depth=spares, reuse=reuse)
        if warn:
            warn_if_weak()

    def command(self, preload: str = "") -> list[str]:
        prefix, desc = isolation()
        extra = [] if self.guard else ["--no-guard"]
        if preload:
            extra += ["--preload", preload]
        if desc.startswith(FULL):
            return bwrap.command(str(runner_path()), TMP_MB, extra)
        return [*prefix, sys.executable, *PYTHON_FLAGS, str(runner_path()), *extra]

    def _start(self, limits: SessionLimits, labels: dict[str, str], preload: str, spare: bool) -> ProcessTransport:
        cwd = tempfile.mkdtemp(prefix="mstar-proc-")
        os.chmod(cwd, 0o755)
        try:
            return ProcessTransport(self.command(preload), cwd, limits, spare, isolation()[1].startswith(FULL))
        except OSError as e:
            shutil.rmtree(cwd, ignore_errors=True)
            raise CandidateFailure("sandbox_error", f"cannot start the runner: {e}") from None

    def close(self) -> None:
        """Kill the warm spares and idle runners. Sessions are closed by their own ``close()``."""
        self.pool.close()
