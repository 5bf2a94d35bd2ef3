"""``--sandbox`` name -> backend. ``auto`` picks docker when an engine answers and the image is present,
else process (with a warning)."""

from __future__ import annotations

from mstar.errors import UsageError

BACKENDS = ("auto", "docker", "process", "inline")


def get_backend(name: str = "inline", **options):
    if name == "inline":
        from mstar.sandbox.inline import InlineBackend

        return InlineBackend()
    if name not in BACKENDS:
        raise UsageError(f"--sandbox: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    raise UsageError(f"--sandbox {name}: not available yet")
