"""The ``docker`` backend: one container per session (per episode; the next episode of the same program
may reuse it, see warm.py), the runner speaking over stdio.

Every container: no network, read-only root with a size-limited tmpfs /tmp, memory limit = memory+swap
limit, a pids limit, a CPU quota, all capabilities dropped, no-new-privileges, a non-root user, an
empty environment, no log driver (a flood of stderr must not fill the host's disk), and the label
``mstar.run=<run id>``. The host attaches to stdin/stdout/stderr *before* starting the container, so no
byte is lost, and half-closes stdin at the end; the container is killed and removed in ``close()``,
which the evaluator calls in ``finally``. Leftovers of crashed hosts are removed by label (``cleanup``).
"""

from __future__ import annotations

import atexit
import queue
import re
import socket
import threading
import time
from typing import Any

from mstar.errors import InfrastructureError, UsageError
from mstar.sandbox.base import SessionLimits
from mstar.sandbox.channel import Conn, Demux, LineBuffer, Tail
from mstar.sandbox.rpc import PooledBackend
from mstar.sandbox.warm import DEPTH, WarmPool

RUN_LABEL = "mstar.run"
CREATED_LABEL = "mstar.created"
TMPFS_MB = 256
# CPU weight of a warm spare while it starts (None: the normal weight). A low weight (it would start on
# idle CPU only) starves it on a busy machine: measured, the next episode then waits for its imports.
SPARE_SHARES: int | None = None
# Containers of any run older than this are leftovers (an episode's own deadline is far shorter).
STALE_AFTER_S = 6 * 3600
# A stopped container of no live session: removed at start once it has been stopped this long.
EXITED_AFTER_S = 60.0

_LIVE: set[str] = set()  # containers this process started and has not removed yet
_LIVE_LOCK = threading.Lock()


def docker_client(timeout: float = 60.0) -> Any:
    """A client for the engine in the environment (DOCKER_HOST or the local socket); raises if none answers."""
    import docker

    client = docker.from_env(timeout=timeout)
    client.ping()
    return client


def engine_fault(api: Any, err: BaseException) -> InfrastructureError | None:
    """``err`` came from the engine's API or the container's stream: the engine's fault when the engine
    itself no longer answers a ping (stopped, restarting, its socket gone). Decided from the host's own
    view of the engine, never from anything the container said, so a harness cannot pass its own
    failure off as the engine's."""
    if fresh_ping(api):
        return None
    return InfrastructureError("docker", f"the Docker engine stopped answering ({type(err).__name__}: "
                                         f"{str(err)[:200]})")


def fresh_ping(api: Any, timeout: float = 10.0) -> bool:
    """The engine accepts a *new* connection and answers on it. A pooled connection is not evidence:
    an engine shutting down still answers on connections it has while its socket is already gone."""
    import docker

    # docker-py keeps a unix socket's path in its adapter and "http+docker://localhost" as base_url.
    path = getattr(getattr(api, "_custom_adapter", None), "socket_path", None)
    url = f"unix://{path}" if path else api.base_url
    try:
        probe = docker.APIClient(base_url=url, version=api.api_version, timeout=timeout)
    except Exception:  # noqa: BLE001
        return False
    try:
        probe.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure to answer: the engine is away
        return False
    finally:
        probe.close()


def engine_answers(timeout: float = 3.0) -> bool:
    try:
        docker_client(timeout).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no usable engine"
        return False


def _exited_for_s(client: Any, cid: str, now: float) -> float:
    """Seconds since the container stopped (0 if unknown or still running)."""
    from datetime import datetime

    try:
        finished = client.api.inspect_container(cid)["State"].get("FinishedAt") or ""
        # RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
        stamp = re.sub(r"(\.\d{6})\d*", r"\1", finished).replace("Z", "+00:00")
        return max(0.0, now - datetime.fromisoformat(stamp).timestamp())
    except Exception:  # noqa: BLE001 - gone, or a date we cannot read: leave it to the age rule
        return 0.0


def cleanup(client: Any, run_id: str | None = None, older_than_s: float | None = None,
            exited_for_s: float | None = None) -> int:
    """Remove mstar containers: those of ``run_id``; or (``run_id`` None) those older than ``older_than_s``
    and those stopped for at least ``exited_for_s`` (a crashed host's: its runner saw EOF and exited)."""
    flt = {"label": f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL}
    now, removed = time.time(), 0
    for c in client.api.containers(all=True, filters=flt):
        if run_id is None:
            created = float((c.get("Labels") or {}).get(CREATED_LABEL, c.get("Created", 0)))
            stale = older_than_s is not None and now - created >= older_than_s
            if not stale and exited_for_s is not None and c.get("State") in ("exited", "dead"):
                # Not at once: another live run may still be reading why its container stopped (OOM).
                stale = _exited_for_s(client, c["Id"], now) >= exited_for_s
            if not stale:
                continue
        try:
            client.api.remove_container(c["Id"], force=True)
            removed += 1
        except Exception:  # noqa: BLE001 - already gone, or being removed by another process
            pass
    return removed


class _Reaper:
    """Removes killed containers off the evaluation's critical path (a forced remove takes ~60 ms).

    The attach socket is closed at once, so the runner sees EOF and stops; ``flush`` waits until every
    queued container is gone (``DockerBackend.close`` and interpreter exit call it).
    """

    def __init__(self) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._lock = threading.Lock()
        self.later: set[str] = set()  # not removed because the engine was away

    def put(self, cid: str) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="mstar-docker-reaper")
                self._thread.start()
        self.q.put(cid)

    def _run(self) -> None:
        while True:
            cid = self.q.get()
            try:
                if self._client is None:
                    self._client = docker_client()
                self._client.api.remove_container(cid, force=True)
                # The engine answers again: remove what it could not while it was away (a restarted
                # engine keeps the containers it stopped).
                while self.later:
                    self.q.put(self.later.pop())
            except Exception as e:  # noqa: BLE001 - already gone; a leftover is removed at exit or by label
                if self._client is not None and engine_fault(self._client.api, e) is not None:
                    self.later.add(cid)
            finally:
                with _LIVE_LOCK:
                    _LIVE.discard(cid)
                self.q.task_done()

    def flush(self) -> None:
        self.q.join()


REAPER = _Reaper()


def _remove_live_at_exit() -> None:
    # atexit runs handlers last-registered first, so warm.py's own handler would come after this one and
    # its spares would be queued to a reaper nobody waits for: kill them here, first.
    from mstar.sandbox import warm

    warm._close_all()
    REAPER.flush()
    with _LIVE_LOCK:
        ids = list(_LIVE)
    if not ids:
        return
    try:
        client = docker_client(10.0)
    except Exception:  # noqa: BLE001 - no engine: nothing we can remove
        return
    for cid in ids:
        try:
            client.api.remove_container(cid, force=True)
        except Exception:  # noqa: BLE001
            pass


atexit.register(_remove_live_at_exit)


class DockerTransport:
    def __init__(self, api: Any, cid: str, sock: Any, limits: SessionLimits, spare: bool = False):
        self.api, self.cid = api, cid
        self.spare = spare
        self.sock = sock
        self._raw: socket.socket = sock._sock  # the hijacked HTTP connection: raw stdio frames both ways
        fd = self._raw.fileno()
        self.stderr = Tail()
        lines = LineBuffer(limits.max_reply_bytes)
        self.conn = Conn(fd, {fd: Demux(lines.feed, self.stderr.feed).feed}, lines)
        self._killed = False

    def alive(self) -> bool:
        return not self._killed and self.conn.quiet()

    def activate(self) -> None:
        """A spare becomes a session: give it the normal CPU weight back."""
        if self.spare:
            self.spare = False
            try:
                self.api.update_container(self.cid, cpu_shares=1024)
            except Exception as e:
                fault = engine_fault(self.api, e)
                if fault is None:
                    raise
                self.kill()
                raise fault from None

    def close_input(self) -> None:
        try:
            self._raw.shutdown(socket.SHUT_WR)  # the engine closes the runner's stdin (stdin_once)
        except OSError:
            pass

    def exit_reason(self, wait_s: float) -> tuple[str, str] | None:
        """Raises ``InfrastructureError`` when the stream ended because the engine went away."""
        try:
            self.api.wait(self.cid, timeout=wait_s)
            state = self.api.inspect_container(self.cid)["State"]
        except Exception as e:  # noqa: BLE001 - still running, or gone
            fault = engine_fault(self.api, e)
            if fault is not None:
                raise fault from None
            return None
        self.conn.drain_stderr(0.5)
        code = state.get("ExitCode")
        if state.get("OOMKilled") or code == 137:
            return "oom", f"the container was killed at its memory limit (exit {code}, OOMKilled={state.get('OOMKilled')})"
        return "crash", f"the runner exited with status {code} without a reply"

    def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        try:
            self._raw.close()
            self.sock.close()
        except OSError:
            pass
        REAPER.put(self.cid)


class DockerBackend(PooledBackend):
    name = "docker"

    def __init__(self, image: str | None = None, guard: bool = True, warm: bool = True, client: Any = None,
                 reuse: bool = True, stale_after_s: float | None = STALE_AFTER_S, exited_after_s: float | None = EXITED_AFTER_S,
                 spares: int = DEPTH):
        from mstar.sandbox.image import image_tag

        try:
            self.client = client or docker_client()
        except Exception as e:  # noqa: BLE001
            raise UsageError(f"--sandbox docker: no Docker engine answers ({e}); start dockerd, "
                             f"or use --sandbox process") from None
        self.image = image or image_tag()
        import docker

        try:
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise UsageError(f"--sandbox docker: image {self.image} is missing: run `mstar sandbox build` "
                             f"(or `mstar sandbox build --local-base` without a registry)") from None
        self.guard, self.warm, self.reuse, self.spares = guard, warm, reuse, spares
        self.pool = WarmPool(self._start, enabled=warm, depth=spares, reuse=reuse)
        if stale_after_s is not None or exited_after_s is not None:
            cleanup(self.client, older_than_s=stale_after_s, exited_for_s=exited_after_s)

    def __getstate__(self) -> dict[str, Any]:  # executors ship backends to workers: the client is rebuilt
        state = dict(self.__dict__)
        state["client"] = None
        state["pool"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.client = docker_client()
        self.pool = WarmPool(self._start, enabled=self.warm, depth=self.spares, reuse=self.reuse)

    def _create(self, limits: SessionLimits, labels: dict[str, str], preload: str, spare: bool) -> str:
        api = self.client.api
        mem = f"{limits.memory_mb}m"
        host_config = api.create_host_config(
            network_mode="none", read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={TMPFS_MB}m,mode=1777"},
            mem_limit=mem, memswap_limit=mem, pids_limit=limits.pids, nano_cpus=int(limits.cpus * 1e9),
            cpu_shares=SPARE_SHARES if spare else None,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], ipc_mode="none",
            log_config={"Type": "none", "Config": {}}, init=False,
        )
        return api.create_container(
            self.image, command=([] if self.guard else ["--no-guard"]) + (["--preload", preload] if preload else []), stdin_open=True, tty=False, use_config_proxy=False,  # stdin_open implies StdinOnce
            environment={}, labels=labels, host_config=host_config, network_disabled=True, hostname="sandbox",
        )["Id"]

    def _start(self, limits: SessionLimits, labels: dict[str, str], preload: str, spare: bool) -> DockerTransport:
        import docker

        all_labels = {RUN_LABEL: "adhoc", CREATED_LABEL: f"{time.time():.0f}", **labels}
        api = self.client.api
        try:
            cid = self._create(limits, all_labels, preload, spare)
        except Exception as e:  # requests' ConnectionError when the engine is down: not an APIError
            fault = engine_fault(api, e)
            if fault is not None:
                raise fault from None
            if isinstance(e, docker.errors.APIError):
                # Nothing of the candidate's goes into a create (limits and labels are the run's): a
                # refusal is the engine's or the run's, never a reason to score the candidate.
                raise InfrastructureError("docker", f"the engine cannot create a sandbox container: {e}") from None
            raise
        with _LIVE_LOCK:
            _LIVE.add(cid)
        transport = None
        try:
            sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            transport = DockerTransport(api, cid, sock, limits, spare and SPARE_SHARES is not None)
            api.start(cid)
        except BaseException as e:
            if transport is not None:
                transport.kill()
            else:
                try:
                    api.remove_container(cid, force=True)
                except Exception:  # noqa: BLE001 - gone, or the engine is away (removed by label later)
                    pass
                with _LIVE_LOCK:
                    _LIVE.discard(cid)
            if isinstance(e, Exception):
                fault = engine_fault(api, e)
                if fault is not None:
                    raise fault from None
            if isinstance(e, docker.errors.APIError):
                raise InfrastructureError("docker", f"the engine cannot start a sandbox container: {e}") from None
            raise
        return transport

    def healthy(self) -> bool:
        """The engine answers: an evaluation paused by an engine fault may be retried."""
        return fresh_ping(self.client.api, timeout=5.0)

    def close(self) -> None:
        """Kill the warm spares and idle runners and wait until every container this process stopped is removed."""
        self.pool.close()
        REAPER.flush()
