"""The sandbox image: its tag, and building it without a registry (docs/ARCHITECTURE.md#sandbox).

The tag is ``mstar-sandbox:<mstar version>-<hash>`` where the hash covers ``sandbox/Dockerfile``,
``sandbox/runner.py`` and the pinned wheel list (the host's installed versions of the harness allow-list
and of what they need). The pins make the container compute exactly what the host computes, so
``--sandbox docker`` and ``--sandbox inline`` print the same numbers; upgrading numpy on the host makes
the image stale, and ``mstar doctor`` says so.

Bases: ``--base IMAGE`` (default ``python:3.11-slim``, pulled when missing) or ``--local-base``, which
makes ``mstar-base:bookworm`` from Debian packages: ``debootstrap`` a minimal bookworm with python3 into
a temp dir and ``docker import`` it. Debian bookworm ships Python 3.11, as the host runs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mstar
from mstar.errors import MstarError
from mstar.harness.static import ALLOWED_THIRD_PARTY

REPO = "mstar-sandbox"
DEFAULT_BASE = "python:3.11-slim"
LOCAL_BASE = "mstar-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# python3-venv brings ensurepip (the build stage installs the wheels into a venv with it).
LOCAL_BASE_PACKAGES = ("python3", "python3-venv")
# Trimmed from the debootstrapped tree before import: caches and docs nobody reads in a sandbox.
_TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale",
         "usr/share/info")

Log = Callable[[str], None]


class SandboxBuildError(MstarError):
    """The sandbox image could not be built; the message says which step and how to fix it."""


def sandbox_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "sandbox"


def _requirement_names(dist: md.Distribution) -> list[str]:
    out = []
    for req in dist.requires or []:
        if "extra ==" in req or "extra==" in req:
            continue  # optional extras are not installed with the package
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        if m:
            out.append(m.group(0))
    return out


def pins() -> list[str]:
    """``name==version`` of the allow-list and its runtime dependencies, as installed on the host."""
    seen: dict[str, str] = {}
    todo = sorted(ALLOWED_THIRD_PARTY)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise SandboxBuildError(f"{name} is not installed on the host: pip install -e . first") from None
        seen[key] = dist.version
        todo.extend(_requirement_names(dist))
    return [f"{k}=={v}" for k, v in sorted(seen.items())]


def content_hash() -> str:
    h = hashlib.sha256()
    for name in ("Dockerfile", "runner.py"):
        h.update((sandbox_dir() / name).read_bytes())
        h.update(b"\0")
    h.update("\n".join(pins()).encode())
    return h.hexdigest()[:12]


def image_tag() -> str:
    return f"{REPO}:{mstar.__version__}-{content_hash()}"


def _image_exists(client: Any, ref: str) -> bool:
    import docker

    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


# --- the local base ---------------------------------------------------------------------------------
def build_local_base(client: Any, log: Log, mirror: str = DEBIAN_MIRROR, force: bool = False) -> str:
    """``mstar-base:bookworm`` from Debian packages; skipped when the image already exists."""
    if not force and _image_exists(client, LOCAL_BASE):
        log(f"base {LOCAL_BASE} present: debootstrap skipped")
        return LOCAL_BASE
    if shutil.which("debootstrap") is None:
        raise SandboxBuildError("--local-base needs debootstrap: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise SandboxBuildError("--local-base runs debootstrap, which needs root: run it with sudo")
    with tempfile.TemporaryDirectory(prefix="mstar-base-") as tmp:
        root = Path(tmp) / "root"
        log(f"debootstrap bookworm ({', '.join(LOCAL_BASE_PACKAGES)}) from {mirror} ...")
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(LOCAL_BASE_PACKAGES)}", "bookworm",
               str(root), mirror]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            tail = (res.stdout + res.stderr).strip().splitlines()[-8:]
            raise SandboxBuildError("debootstrap failed (is the Debian mirror reachable? --mirror URL):\n"
                                    + "\n".join(tail))
        for rel in _TRIM:
            target = root / rel
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir(parents=True)
        log(f"docker import -> {LOCAL_BASE}")
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            repo, tag = LOCAL_BASE.split(":")
            client.api.import_image_from_stream(tar.stdout, repository=repo, tag=tag)
        finally:
            tar.stdout.close()
            if tar.wait() != 0:
                raise SandboxBuildError("tar of the debootstrapped tree failed")
    return LOCAL_BASE


# --- the wheelhouse ---------------------------------------------------------------------------------
def _base_python(client: Any, base: str) -> str:
    out = client.containers.run(base, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                remove=True, network_mode="none", entrypoint=[])
    return out.decode().strip()


def fill_wheelhouse(dest: Path, py: str, log: Log, wheelhouse: Path | None = None) -> list[str]:
    """``pip download`` the pinned wheels into ``dest`` (for the base's Python ``py``); returns file names.

    With ``wheelhouse`` the wheels come from that directory only (no index): for offline machines.
    """
    reqs = pins()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "requirements.txt").write_text("\n".join(reqs) + "\n")
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(dest), "-r", str(dest / "requirements.txt")]
    host_py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if py != host_py:
        # Wheels for the base's interpreter, not the host's.
        cmd += ["--python-version", py, "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                "--platform", "any"]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    log(f"pip download {len(reqs)} wheels for Python {py}" + (f" from {wheelhouse}" if wheelhouse else ""))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SandboxBuildError("pip download failed (PyPI unreachable? pass --wheelhouse DIR):\n"
                                + "\n".join((res.stdout + res.stderr).strip().splitlines()[-8:]))
    return sorted(p.name for p in dest.glob("*.whl"))


# --- the image --------------------------------------------------------------------------------------
def build_image(client: Any, base: str | None = None, local_base: bool = False, wheelhouse: Path | None = None,
                log: Log = print, mirror: str = DEBIAN_MIRROR, force: bool = False) -> str:
    """Build (or find) the current sandbox image; returns its tag."""
    import docker

    tag = image_tag()
    if not force and _image_exists(client, tag):
        log(f"{tag} is present and current: nothing to build")
        return tag
    if local_base:
        base = build_local_base(client, log, mirror)
    else:
        base = base or DEFAULT_BASE
        if not _image_exists(client, base):
            log(f"pulling {base} ...")
            try:
                client.images.pull(base)
            except docker.errors.APIError as e:
                raise SandboxBuildError(f"cannot pull {base} ({e.explanation or e}); on machines without a "
                                        f"registry use --local-base") from None
    py = _base_python(client, base)
    with tempfile.TemporaryDirectory(prefix="mstar-build-") as tmp:
        ctx = Path(tmp)
        for name in ("Dockerfile", "runner.py"):
            shutil.copy2(sandbox_dir() / name, ctx / name)
        wheels = fill_wheelhouse(ctx / "wheels", py, log, wheelhouse)
        log(f"docker build {tag} FROM {base} ({len(wheels)} wheels)")
        labels = {"mstar.version": mstar.__version__, "mstar.hash": content_hash(), "mstar.base": base,
                  "mstar.wheels": " ".join(wheels)[:4000]}
        docker_build(client, ctx, tag, {"BASE": base}, labels, log)
    return tag


def docker_build(client: Any, ctx: Path, tag: str, buildargs: dict[str, str], labels: dict[str, str], log: Log) -> None:
    """``docker build`` of ``ctx`` as ``tag``, then remove the untagged images of its earlier stages.

    The engine's classic builder (the one the API drives) keeps each finished stage of a multi-stage
    build as an untagged image: without this, every build leaves a dangling ``<none>`` image of the
    base plus the wheels behind. Only the stage images this build's own output names are removed."""
    import docker

    errors: list[str] = []
    last_id, stage_ids, steps = None, [], 0
    for chunk in client.api.build(path=str(ctx), tag=tag, buildargs=buildargs, rm=True, forcerm=True,
                                  decode=True, labels=labels, network_mode="none", pull=False):
        if "error" in chunk:
            errors.append(str(chunk["error"]).strip())
            continue
        line = chunk.get("stream", "").strip()
        if line.startswith("Step "):
            log("  " + line)
            if " : FROM " in line.upper() and steps and last_id:
                stage_ids.append(last_id)  # the image the previous stage ended with
            steps += 1
        elif line.startswith("---> ") and " " not in line[5:].strip():
            last_id = line[5:].strip()  # " ---> 3f1a2b..." (not " ---> Running in ...")
    if errors:
        raise SandboxBuildError("docker build failed: " + " | ".join(errors)[-2000:])
    for sid in stage_ids:
        try:
            if not client.images.get(sid).tags:
                client.images.remove(sid)
        except docker.errors.APIError:
            pass  # in use by another build, or gone: nothing of ours is lost
