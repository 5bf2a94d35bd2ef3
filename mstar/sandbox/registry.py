"""``--sandbox`` name -> backend.

``auto`` picks docker when an engine answers and the image is present, else the process sandbox *only*
when its full isolation (bubblewrap) works here, with a warning on stderr naming why docker was not used.
It never falls back to anything weaker: with neither, it refuses with one line saying what to fix.
``--sandbox process`` by name runs even without bubblewrap, warning what is missing; ``inline`` (no
isolation at all) runs only when asked for by name."""

from __future__ import annotations

import sys

from mstar.errors import UsageError

BACKENDS = ("auto", "docker", "process", "inline")


def _docker_choice() -> str | None:
    """None when the docker backend can run here; else why not."""
    from mstar.sandbox.docker_backend import docker_client
    from mstar.sandbox.image import image_tag

    try:
        client = docker_client(timeout=3.0)
    except Exception as e:  # noqa: BLE001 - any failure means no usable engine
        return f"no Docker engine answers ({type(e).__name__})"
    try:
        import docker

        tag = image_tag()
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            return f"the sandbox image {tag} is missing (mstar sandbox build)"
        return None
    finally:
        client.close()


def auto_warning(why: str) -> str:
    """The one line ``--sandbox auto`` prints when it falls back to the process sandbox, with the fix."""
    fix = ("start a Docker engine (sudo dockerd >/tmp/dockerd.log 2>&1 &), then mstar sandbox build --local-base"
           if "engine" in why else "mstar sandbox build --local-base (or --base python:3.11-slim where you can pull)")
    return (f"[mstar] warning: --sandbox auto: using the process sandbox (bubblewrap; weaker than docker): {why}. "
            f"Fix: {fix}; `mstar doctor` checks it. Pass --sandbox process to choose it without this warning.")


def auto_choice() -> tuple[str, str]:
    """(backend name, why): what ``--sandbox auto`` picks on this machine; ``none`` when it must refuse."""
    from mstar.sandbox.process import missing_for_full

    no_docker = _docker_choice()
    if no_docker is None:
        return "docker", "engine answers and the sandbox image is present"
    no_bwrap = missing_for_full()
    if no_bwrap is None:
        return "process", f"{no_docker}; bubblewrap works"
    return "none", f"{no_docker}, and {no_bwrap}"


def settle(name: str) -> tuple[str, str]:
    """(the backend ``name`` stands for, the ``auto`` fallback warning or ""): ``auto`` is resolved here,
    and refused in one line with the fix when no sandbox with full isolation is available."""
    if name != "auto":
        return name, ""
    name, why = auto_choice()
    if name == "none":
        raise UsageError(f"--sandbox auto: no sandbox with full isolation here: {why} "
                         "(or pass --sandbox process to accept a weaker one)")
    return name, auto_warning(why) if name == "process" else ""


def get_backend(name: str, **options):
    """A backend by name; ``options`` go to its constructor (e.g. ``guard=False``, ``image=...``)."""
    if name not in BACKENDS:
        raise UsageError(f"--sandbox: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    name, warning = settle(name)
    if warning:
        print(warning, file=sys.stderr)
    if name == "inline":
        from mstar.sandbox.inline import InlineBackend

        return InlineBackend()
    if name == "process":
        from mstar.sandbox.process import ProcessBackend

        return ProcessBackend(**options)
    from mstar.sandbox.docker_backend import DockerBackend

    return DockerBackend(**options)
