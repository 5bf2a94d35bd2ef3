"""``mstar doctor``: what this machine has for mstar, each missing piece with its fix. No network calls,
except one to ``--api-base`` when it is given (is a server listening there?)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "missing"
    detail: str
    fix: str = ""


BUILD_FIX = "mstar sandbox build --local-base   (or: mstar sandbox build --base python:3.11-slim where a registry is reachable)"


def _engine() -> tuple[Check, object | None]:
    from mstar.sandbox.docker_backend import docker_client

    try:
        client = docker_client(timeout=3.0)
    except Exception as e:  # noqa: BLE001 - any failure: no usable engine
        return Check("docker engine", "missing", f"no engine answers ({type(e).__name__})",
                     "sudo apt-get install docker.io && sudo dockerd >/tmp/dockerd.log 2>&1 &   "
                     "(or: --sandbox process, weaker)"), None
    version = client.version().get("Version", "?")
    return Check("docker engine", "ok", f"server {version}"), client


def _image(client: object | None) -> Check:
    from mstar.sandbox.image import REPO, image_tag

    tag = image_tag()
    if client is None:
        return Check("sandbox image", "missing", f"{tag} (no engine to hold it)", BUILD_FIX)
    tags = sorted(t for img in client.images.list(name=REPO) for t in img.tags)
    if tag in tags:
        return Check("sandbox image", "ok", f"{tag} (current)")
    if tags:
        return Check("sandbox image", "warn", f"{', '.join(tags[-3:])} present but stale: current is {tag} "
                     "(runner, Dockerfile or the pinned wheels changed)", BUILD_FIX)
    return Check("sandbox image", "missing", f"{tag} not built", BUILD_FIX)


def _process() -> list[Check]:
    from mstar.sandbox.process import FULL, isolation, protections

    _, desc = isolation()
    rows = [Check(f"  {name}", "ok" if on else "warn", ("" if on else "NOT active: ") + what)
            for name, what, on in protections()]
    if desc.startswith(FULL):
        return [Check("process sandbox", "ok", desc), *rows]
    return [Check("process sandbox", "warn", desc,
                  "apt-get install bubblewrap util-linux; as non-root enable user namespaces "
                  "(sysctl kernel.unprivileged_userns_clone=1)"), *rows]


def _auto() -> Check:
    from mstar.sandbox.registry import auto_choice

    name, why = auto_choice()
    if name == "docker":
        return Check("--sandbox auto", "ok", f"docker: {why}")
    if name == "process":
        return Check("--sandbox auto", "warn", f"process: {why}", "build the image / start the engine (rows above)")
    return Check("--sandbox auto", "missing", f"refuses to run: {why}",
                 "start Docker and `mstar sandbox build --local-base`, or apt-get install bubblewrap")


def _data() -> Check:
    # The rule `mstar eval` and `mstar evolve` use, so that "ok" here means `--task locomo` finds it.
    from mstar.tasks.base import DEFAULT_DATA_DIRS, find_data

    path, how = find_data(None, "locomo10.json")
    if how and path.is_file():
        return Check("data (LoCoMo)", "ok", f"{path} (from {how})")
    where = f"{path}: no such file (from {how})" if how else "locomo10.json not found"
    order = ", then ".join(["$MSTAR_DATA", *(f"{d}/" if d.startswith(".") else f"./{d}/" for d in DEFAULT_DATA_DIRS)])
    return Check("data (LoCoMo)", "missing", f"{where} (looked up: --data, then {order})",
                 "export MSTAR_DATA=/path/to/locomo10.json, or pass --data PATH; "
                 "`--task synthetic` needs no data")


def _model(model: str | None, api_base: str | None) -> Check:
    model = model or os.environ.get("MSTAR_MODEL")
    if importlib.util.find_spec("litellm") is None:
        return Check("model", "missing", "litellm is not installed", 'pip install -e ".[dev]"')
    if not model:
        return Check("model", "warn", "none configured: offline mode (LLM seeds and operators are skipped)",
                     "pass --model MODEL (any litellm model string; --api-base URL for a local "
                     "OpenAI-compatible server) and set its key, e.g. OPENAI_API_KEY")
    from mstar.broker import _litellm

    try:
        env = _litellm().validate_environment(model, api_base=api_base)
    except Exception as e:  # noqa: BLE001 - unknown provider
        return Check("model", "missing", f"{model}: litellm does not know it ({type(e).__name__})",
                     "use a litellm model string such as openai/gpt-4o-mini or ollama/llama3")
    missing = env.get("missing_keys") or []
    if missing and not api_base:
        return Check("model", "missing", f"{model}: {', '.join(missing)} not set", f"export {missing[0]}=...")
    if api_base:
        dead = _unreachable(api_base)
        if dead:
            return Check("model", "missing", f"{model} at {api_base}: {dead}",
                         "start the server (it must listen on that host and port), or fix --api-base")
        return Check("model", "ok", f"{model} at {api_base} (the server answers; the model was not called)")
    return Check("model", "ok", f"{model} (keys present; not called)")


def _unreachable(api_base: str, timeout_s: float = 3.0) -> str | None:
    """Why nothing usable answers at ``api_base`` (no TCP listener, or not HTTP), or None."""
    import socket
    import urllib.error
    import urllib.request
    from urllib.parse import urlparse

    url = urlparse(api_base)
    if url.scheme not in ("http", "https") or not url.hostname:
        return "not an http(s) URL"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as e:
        return f"nothing listens on {url.hostname}:{port} ({e.strerror or type(e).__name__})"
    try:
        urllib.request.urlopen(api_base.rstrip("/") + "/models", timeout=timeout_s).close()  # noqa: S310 - the user's URL
    except urllib.error.HTTPError:
        return None  # an HTTP server answered (401 / 404 are its business)
    except (urllib.error.URLError, OSError, ValueError) as e:
        return f"{url.hostname}:{port} accepts connections but does not answer HTTP ({type(e).__name__})"
    return None


def run_checks(model: str | None = None, api_base: str | None = None) -> list[Check]:
    engine, client = _engine()
    checks = [engine, _image(client), *_process(), _auto(), _data(), _model(model, api_base)]
    if client is not None:
        client.close()
    return checks
