"""``--sandbox`` name -> backend. ``auto`` picks docker when an engine answers and the image is present,
else process (with a warning on stderr)."""

from __future__ import annotations

import sys

from mstar.errors import UsageError

BACKENDS = ("auto", "docker", "process", "inline")


def auto_choice() -> tuple[str, str]:
    """(backend name, why): what ``--sandbox auto`` picks on this machine."""
    from mstar.sandbox.docker_backend import docker_client
    from mstar.sandbox.image import image_tag

    try:
        client = docker_client(timeout=3.0)
    except Exception as e:  # noqa: BLE001 - any failure means no usable engine
        return "process", f"no Docker engine answers ({type(e).__name__})"
    try:
        import docker

        tag = image_tag()
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            return "process", f"the sandbox image {tag} is missing (mstar sandbox build)"
        return "docker", f"engine answers and {tag} is present"
    finally:
        client.close()


def auto_warning(why: str) -> str:
    """The one line ``--sandbox auto`` prints when it falls back to the process sandbox, with the fix."""
    fix = ("start a Docker engine (sudo dockerd >/tmp/dockerd.log 2>&1 &), then mstar sandbox build --local-base"
           if "engine" in why else "mstar sandbox build --local-base (or --base python:3.11-slim where you can pull)")
    return (f"[mstar] warning: --sandbox auto: using the process sandbox (weaker than docker): {why}. "
            f"Fix: {fix}; `mstar doctor` checks it. Pass --sandbox process to choose it without this warning.")


def get_backend(name: str = "inline", **options):
    """A backend by name; ``options`` go to its constructor (e.g. ``guard=False``, ``image=...``)."""
    if name not in BACKENDS:
        raise UsageError(f"--sandbox: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    if name == "auto":
        name, why = auto_choice()
        if name == "process":
            print(auto_warning(why), file=sys.stderr)
    if name == "inline":
        from mstar.sandbox.inline import InlineBackend

        return InlineBackend()
    if name == "process":
        from mstar.sandbox.process import ProcessBackend

        return ProcessBackend(**options)
    from mstar.sandbox.docker_backend import DockerBackend

    return DockerBackend(**options)
