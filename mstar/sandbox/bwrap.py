"""The ``process`` sandbox's filesystem and namespaces, built with bubblewrap (``bwrap``, Debian package
``bubblewrap``).

The runner starts in a new mount namespace whose root is an empty tmpfs holding, read-only, only:
- ``/usr`` (libc, the dynamic loader, ``setpriv``) with every Python ``site-packages`` / ``dist-packages``
  under it hidden, and ``/etc/ld.so.cache``;
- the interpreter's own prefix (same path as on the host: its libpython is found by an absolute path),
  with its ``site-packages`` hidden (``python -P -s -S``: no site import at all);
- the harness allow-list (pydantic, numpy, bm25s) and their dependencies, one bind per top-level
  module, under ``/opt/mstar/site`` (never the host's site-packages wholesale: no mstar, no litellm);
- the runner at ``/opt/mstar/runner.py``, a fresh ``/proc`` of its own pid namespace, a minimal ``/dev``
  and a size-limited tmpfs ``/tmp`` (its cwd and HOME).
No host file beyond those, no socket file (the Docker engine's, Ray's, X11's), no data, no checkout.
New network namespace (no interfaces; abstract unix sockets are per network namespace, so the host's
are unreachable too), pid, ipc, uts and cgroup namespaces, an empty environment (but a fixed PYTHONHASHSEED), a new session, and
the runner exits when the host closes its stdin. As root, bwrap sets the mounts up and ``setpriv`` then switches to an
unprivileged uid/gid (65534) with no capabilities and no-new-privs before Python starts; as a normal
user, a user namespace maps the user to 65534 and bwrap drops every capability.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from mstar.sandbox.base import HASH_SEED, PYTHON_FLAGS

SANDBOX_UID = 65534
SITE = "/opt/mstar/site"
RUNNER = "/opt/mstar/runner.py"
ALLOWED_DISTS = ("pydantic", "numpy", "bm25s")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_closure(names: tuple[str, ...]) -> list[md.Distribution]:
    """The installed distributions ``names`` need at run time (extras excluded), each once."""
    seen: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if _norm(name) in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[_norm(name)] = dist
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            m = re.match(r"[A-Za-z0-9_.\-]+", req)
            if m:
                todo.append(m.group(0))
    return list(seen.values())


@lru_cache(maxsize=1)
def allowed_modules() -> tuple[tuple[str, str], ...]:
    """(host path, name under SITE) of every top-level module or directory of the allow-list's closure."""
    out: dict[str, str] = {}
    for dist in _dist_closure(ALLOWED_DISTS):
        for f in dist.files or []:
            top = str(f).split("/")[0]
            if top in ("..", "__pycache__") or top in out.values() or top.endswith(".pth"):
                continue
            src = Path(dist.locate_file(top)).resolve()
            if src.exists():
                out[str(src)] = top
    return tuple(sorted(out.items(), key=lambda kv: kv[1]))


def _hidden_site_dirs(prefix: str) -> list[str]:
    """Every python package directory under /usr and the interpreter's prefix: hidden behind empty tmpfs."""
    found = set()
    for root in {"/usr", prefix}:
        for pattern in ("lib/python3*/site-packages", "lib/python3*/dist-packages", "lib/python3/dist-packages",
                        "local/lib/python3*/site-packages", "local/lib/python3*/dist-packages"):
            found.update(str(p) for p in Path(root).glob(pattern) if p.is_dir())
    return sorted(found)


def interpreter() -> tuple[str, str]:
    """(the real interpreter binary, its prefix): a venv's python is a link to the base interpreter."""
    exe = os.path.realpath(sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


def _dirs(path: str, made: set[str]) -> list[str]:
    """``--dir`` for every missing parent of ``path``, mode 0755 (bwrap's own are 0700: the sandbox
    user could not traverse them)."""
    out: list[str] = []
    parts = Path(path).parts
    for i in range(2, len(parts)):
        d = str(Path(*parts[:i]))
        if d not in made:
            made.add(d)
            out += ["--perms", "0755", "--dir", d]
    return out


def command(runner: str, tmp_mb: int, extra_args: list[str]) -> list[str]:
    """The full argv: bwrap, (setpriv as root), the interpreter, the runner and its arguments."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise FileNotFoundError("bwrap not found")
    exe, prefix = interpreter()
    made: set[str] = {"/usr", "/tmp", "/proc", "/dev", "/etc"}
    argv = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            # No --die-with-parent: its PR_SET_PDEATHSIG fires when the *thread* that started bwrap ends,
            # and warm spares are started from short-lived threads. The runner exits on EOF of its stdin
            # when the host goes, and close() kills its process group.
            "--new-session", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", HASH_SEED,
            "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            argv += ["--ro-bind", f"/{link}", f"/{link}"]
    if os.path.exists("/etc/ld.so.cache"):
        argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    if not prefix.startswith("/usr/"):
        argv += _dirs(prefix + "/x", made) + ["--ro-bind", prefix, prefix]
    for d in _hidden_site_dirs(prefix):
        argv += ["--tmpfs", d]
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_mb << 20), "--perms", "1777", "--tmpfs", "/tmp"]
    argv += _dirs(SITE + "/x", made) + ["--perms", "0755", "--dir", SITE]
    for src, name in allowed_modules():
        argv += ["--ro-bind", src, f"{SITE}/{name}"]
    argv += ["--ro-bind", runner, RUNNER, "--chdir", "/tmp"]
    if os.geteuid() == 0:
        # Root sets the mounts up; the runner itself is never root: a plain unprivileged uid.
        argv += ["--", "/usr/bin/setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    else:
        argv[1:1] = ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    return [*argv, "--", exe, *PYTHON_FLAGS, "-S", RUNNER, "--site", SITE, *extra_args]


@lru_cache(maxsize=1)
def probe() -> str | None:
    """None when a bwrap sandbox starts here (and really is one); else why not, in a few words."""
    if shutil.which("bwrap") is None:
        return "bwrap not found (apt-get install bubblewrap)"
    if os.geteuid() == 0 and not os.path.exists("/usr/bin/setpriv"):
        return "setpriv not found (apt-get install util-linux)"
    check = ("import os,sys\n"
             "assert os.getuid() != 0, 'uid 0'\n"
             "assert not os.path.exists('/work') and not os.path.exists('/var/run'), 'host files visible'\n"
             "sys.path.append(sys.argv[-1]); import pydantic, numpy\n")
    with tempfile.TemporaryDirectory(prefix="mstar-probe-") as d:
        os.chmod(d, 0o755)
        script = Path(d) / "probe.py"
        script.write_text(check)
        os.chmod(script, 0o644)
        argv = command(str(script), 16, [])
        last = len(argv) - 1 - argv[::-1].index(RUNNER)  # the interpreter's argument, not the bind's
        argv = argv[:last] + [RUNNER, SITE]
        try:
            res = subprocess.run(argv, capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap failed to start ({type(e).__name__})"
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        return f"bwrap sandbox does not start here: {(err[-1] if err else 'exit ' + str(res.returncode))[:200]}"
    return None

