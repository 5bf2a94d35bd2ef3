"""The Ray executor (docs/ARCHITECTURE.md#executors): one Ray task per (program, episode) evaluation, on a local Ray
instance or an existing cluster.

- Sandbox slots are a custom resource (``mstar_sandbox``): each task asks for one slot and no CPU, so
  the number of concurrent sandboxes is ``--workers`` (or the cluster's slots), whatever Ray thinks of
  the CPU count; the sandbox itself limits the CPU a candidate may use.
- ``map`` keeps a bounded window of tasks in flight and tops it up only while the caller iterates, so
  once the caller stops, no new task starts; ``ray.wait(num_returns=1)`` yields results as they end.
- Deadlines are the sandbox's (``SessionLimits``): a hung harness is killed by its backend and comes
  back as a failed result with reason ``timeout``. ``ray.cancel`` is only used for leftovers on close,
  and a worker whose task it interrupted exits instead of serving another one.
- A task whose worker process dies is retried by Ray (``max_retries``); its LLM calls are then served
  from the broker actor's cache (see ``ray_broker``). A job that keeps killing its worker is recorded
  as a failed candidate (reason ``worker_lost``) and the run goes on.
- Infrastructure faults are not candidate failures (``mstar.faults``): a task whose node died
  (``NodeDiedError``, a result object lost with it) or whose node's Docker engine went away, or a
  broker that does not answer, pauses the run and the job is submitted again after a backoff; a
  cluster left with no sandbox slot (the only node offering them was lost) waits for one to join.
  When the fault outlasts the run's patience, ``InfrastructureError`` stops the run, resumable.
- The sandbox backend is rebuilt inside each worker from its name (a live Docker client cannot be
  pickled), once per worker process; so is the run's embedder (a torch model should not travel), so
  a harness scores the same inline and on Ray.
- A local instance has a watchdog and is swept for at the next start if its driver is killed: see
  ``ray_cleanup``.

Ray is imported lazily: ``import mstar`` never imports it. What Ray writes where: docs/RAY.md.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mstar.episodes import Episode
from mstar.errors import CandidateFailure, InfrastructureError, UsageError
from mstar.evaluate import EpisodeResult, EvalConfig, evaluate_episode
from mstar.evolve.execution import ray_quiet
from mstar.evolve.execution.executor import EvalJob, JobResult, LLMMeter
from mstar.faults import FaultPause
from mstar.toolkit import Toolkit

RESOURCE = "mstar_sandbox"
MAX_RETRIES = 2  # attempts after a worker death; a job that kills 3 workers is a failed candidate
OBJECT_STORE_BYTES = 256 * 1024**2  # episodes are small; Ray's default (30% of RAM) is far too much
SLOT_CHECK_S = 5.0  # with nothing finished for this long, check the cluster still offers sandbox slots


# --- starting or joining Ray ----------------------------------------------------------------------
def start_ray(workers: int, address: str | None = None) -> tuple[bool, str | None]:
    """Join ``address`` (or $RAY_ADDRESS), else start a local instance with ``workers`` sandbox slots.

    Returns (started here, temp dir to remove at shutdown). A Ray already initialised in this process
    is reused as it is (tests share one instance). Leftovers of local instances whose mstar driver
    died (kill -9) are reaped first, whatever happens next: see ``ray_cleanup``.
    """
    from mstar.evolve.execution import ray_cleanup

    ray_cleanup.sweep()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        _local_env()
    import ray

    ray_quiet.install()  # Ray's "(raylet) A worker died" lines: only those that mean something, reworded
    if ray.is_initialized():
        return False, None
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
        return False, None
    # Short on purpose: Ray puts unix sockets under it, and a socket path must fit in 107 bytes.
    temp = tempfile.mkdtemp(prefix=ray_cleanup.PREFIX, dir=str(ray_cleanup.ROOT))
    # Owner and watchdog before Ray starts anything: a kill at any later moment leaves nothing behind.
    ray_cleanup.record_driver(temp)
    _WATCHDOGS[temp] = ray_cleanup.spawn_watchdog(temp)
    try:
        ray.init(num_cpus=os.cpu_count() or 1, resources={RESOURCE: float(workers)}, include_dashboard=False,
                 object_store_memory=OBJECT_STORE_BYTES, _temp_dir=temp, **quiet)
    except BaseException:
        stop_ray(temp)
        raise
    return True, temp


_WATCHDOGS: dict[str, int] = {}  # temp dir -> write end of its watchdog's pipe (see ray_cleanup)


def _local_env() -> None:
    """Environment for a local instance; set before Ray is imported (Ray reads its config at import).

    Token auth is on by default for local instances (Ray >= 2.59); with no token in the environment
    Ray writes one to ~/.ray/auth_token. A per-run token in the environment keeps $HOME clean; the
    raylet and workers inherit it. Usage stats are off (no report, no network attempt)."""
    if "ray" in sys.modules:
        return  # too late: Ray has read its config; it falls back to its default token file
    if "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def stop_ray(temp: str | None) -> None:
    import ray

    ray.shutdown()
    if temp:
        shutil.rmtree(temp, ignore_errors=True)
        fd = _WATCHDOGS.pop(temp, None)
        if fd is not None:
            os.close(fd)  # the watchdog ends whatever outlived shutdown (an agent still exiting), then exits


def sandbox_slots() -> int:
    import ray

    return int(ray.cluster_resources().get(RESOURCE, 0))


# --- the worker side ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerSpec:
    """What a task needs besides its job and episode; small and picklable."""

    backend: str
    backend_options: tuple[tuple[str, Any], ...]
    config: EvalConfig = field(hash=False)
    labels: tuple[tuple[str, str], ...] = ()
    has_llm: bool = False
    embedder: str = "hashing"  # how to build the run's embedder in a worker: "hashing" or "local"
    embedder_name: str = "hashing"  # what the harness sees as ``toolkit.embedder_name``
    broker: Any = field(default=None, hash=False, compare=False)  # actor handle
    limits: Any = field(default=None, hash=False, compare=False)  # the run's LLMLimits (embed quotas)


_BACKENDS: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
_EMBEDDERS: dict[str, Any] = {}
_PROGRAMS: OrderedDict[str, Any] = OrderedDict()


def _close_backends() -> None:
    for b in _BACKENDS.values():
        close = getattr(b, "close", None)
        if close:
            close()


def _backend(spec: WorkerSpec) -> Any:
    key = (spec.backend, spec.backend_options)
    b = _BACKENDS.get(key)
    if b is None:
        from mstar.sandbox.registry import get_backend

        if not _BACKENDS:
            atexit.register(_close_backends)  # kill warm spares when the worker exits cleanly
        try:
            b = _BACKENDS[key] = get_backend(spec.backend, **dict(spec.backend_options))
        except UsageError as e:
            # A worker started while its node's engine is away: the engine's fault, not the user's flag.
            from mstar.sandbox.docker_backend import engine_answers

            if spec.backend == "docker" and not engine_answers():
                raise InfrastructureError("docker", f"the Docker engine on this node does not answer ({e})") from None
            raise
    return b


def _program(job: EvalJob) -> Any:
    from mstar.harness.loader import from_source

    p = _PROGRAMS.get(job.program_id)
    if p is None:
        p = _PROGRAMS[job.program_id] = from_source(job.source, name=job.program_id, path=f"<program {job.program_id}>")
        if len(_PROGRAMS) > 64:
            _PROGRAMS.popitem(last=False)
    return p


def _ray_call(ref: Any) -> Any:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        # Re-raise what the broker raised (BudgetExceeded, LLMUnavailable): the sandbox reacts to those.
        raise (e.cause if isinstance(e.cause, BaseException) else e) from None
    except (ray.exceptions.RayActorError, ray.exceptions.RaySystemError) as e:
        # The broker actor is gone or unreachable: the run's fault, never told to the harness as a
        # model error it might "handle" by scoring worse.
        raise InfrastructureError("broker", f"the LLM broker actor does not answer ({type(e).__name__})") from None


def _embedder(choice: str) -> Any:
    """The run's embedder, built here by name once per worker process (a model is loaded on its first
    call and keeps its vector cache across this worker's tasks), never shipped as a pickled model."""
    e = _EMBEDDERS.get(choice)
    if e is None:
        from mstar.embedders import default_embedder

        e = _EMBEDDERS[choice] = default_embedder(prefer=choice)
    return e


def _worker_toolkit(spec: WorkerSpec, call_id: str) -> Toolkit:
    def route(purpose: str, candidate: str) -> Any:
        def llm(messages: Any, **kw: Any) -> str:
            return _ray_call(spec.broker.llm.remote(call_id, purpose, messages, kw, candidate))

        return llm

    return Toolkit(llm=route("harness", "") if spec.has_llm else None, embed=_embedder(spec.embedder),
                   embedder_name=spec.embedder_name, route=route if spec.has_llm else None, limits=spec.limits)


def run_job(job: EvalJob, episode: Episode, spec: WorkerSpec, call_id: str) -> tuple[EpisodeResult, int]:
    """The body of one Ray task: evaluate one program on one episode in this worker's sandbox."""
    _interruptible()
    try:
        res = evaluate_episode(_program(job), episode, _backend(spec), _worker_toolkit(spec, call_id), job.knobs,
                               spec.config, labels=dict(spec.labels))
    except KeyboardInterrupt:
        _retire_worker()
        raise
    return res, os.getpid()


def _interruptible() -> None:
    """Make sure ``ray.cancel`` can interrupt this task. It simulates a SIGINT; if anything in the worker
    set SIGINT to ``SIG_DFL``/``SIG_IGN`` from Python, CPython 3.11 calls that enum as a handler
    ("TypeError: 'Handlers' object is not callable") and the task runs on, so the worker is never
    retired. Python's own handler raises KeyboardInterrupt, which ``run_job`` turns into retirement."""
    import signal
    import threading

    # Only the broken case: a callable handler (Python's, or Ray's own) is left as it is.
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) in (signal.SIG_DFL, signal.SIG_IGN):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _retire_worker() -> None:
    """End this worker after ``ray.cancel`` interrupted its task (the session was closed on the way out).

    The interrupt lands at any bytecode, an import included: a module can be left in ``sys.modules``
    but missing from its parent package, and every later use of it fails (numpy's lazy submodules
    then recurse without end). Ray would hand this interpreter the next task; a fresh one costs a
    worker start. Cancelled tasks are not retried, so exiting loses nothing."""
    try:
        ray_quiet.mark_retired()  # its death is on purpose: the driver does not report it
        _close_backends()  # warm spares: Ray does not run atexit hooks for a worker that exits this way
    finally:
        os._exit(0)


class _LostBackend:
    """A backend that cannot open: turns 'the worker died every attempt' into an ordinary failed result
    (every probe scored 0 with the reason), built by the same code as any other failure."""

    name = "lost"

    def __init__(self, detail: str):
        self.detail = detail

    def open(self, *_: Any, **__: Any) -> Any:
        raise CandidateFailure("worker_lost", self.detail)


# --- the driver side ------------------------------------------------------------------------------
class RayExecutor:
    name = "ray"

    def __init__(self, episodes: dict[str, Episode], backend: Any, toolkit: Toolkit, config: EvalConfig,
                 meter: LLMMeter | None = None, labels: dict[str, str] | None = None,
                 on_start: Callable[[EvalJob], None] | None = None, workers: int | None = None,
                 address: str | None = None, backend_options: dict[str, Any] | None = None,
                 run_dir: str | None = None, max_retries: int = MAX_RETRIES, faults: FaultPause | None = None):
        self.episodes = episodes
        self.faults = faults or FaultPause()
        self.config = config
        self.meter = meter
        self.on_start = on_start
        self.max_retries = max_retries
        self._pending: dict[Any, tuple[EvalJob, str]] = {}
        self._broker: Any = None
        workers = max(1, int(workers or os.cpu_count() or 1))
        embedder = embedder_choice(toolkit)  # refused before any Ray process starts
        self._started, self._temp = start_ray(workers, address)  # before `import ray`: see _local_env
        import ray

        try:
            self.slots = sandbox_slots()
            if self.slots < 1:
                raise UsageError(f"--ray-address: the cluster has no {RESOURCE!r} resource; start its nodes with "
                                 f"ray start --resources='{{\"{RESOURCE}\": N}}' (N sandboxes per node)")
            self.window = 2 * self.slots  # queued enough that a slot never idles while the driver stores a result
            self._broker = self._make_broker(toolkit, meter, run_dir)
        except BaseException:
            self.close()  # a Ray instance started here must not outlive a failed start
            raise
        self.spec = WorkerSpec(backend=_backend_name(backend), backend_options=tuple(sorted((backend_options or {}).items())),
                               config=config, labels=tuple(sorted((labels or {}).items())),
                               has_llm=toolkit.has_llm, embedder=embedder,
                               embedder_name=getattr(toolkit, "embedder_name", "hashing"), broker=self._broker,
                               limits=getattr(toolkit, "limits", None))
        self._task = ray.remote(run_job).options(num_cpus=0, resources={RESOURCE: 1}, max_retries=max_retries,
                                                 retry_exceptions=False, name="mstar_eval")
        self._episode_refs: dict[str, Any] = {}
        self._ids = itertools.count()

    def _make_broker(self, toolkit: Toolkit, meter: Any, run_dir: str | None) -> Any:
        import ray

        backend = getattr(meter, "backend", None)
        if toolkit.has_llm and backend is None:
            raise UsageError("the ray executor serves harness LLM calls from the run's ledger: pass it as meter")
        store = getattr(meter, "store", None)
        run_dir = run_dir or (str(store.dir) if store is not None and hasattr(store, "dir") else None)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from mstar.evolve.execution.ray_broker import BrokerActor

        # Threaded: workers' calls are served concurrently (a model call mostly waits on the network).
        # Pinned to the driver's node: it opens the run's run.db, which lives there.
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        actor = ray.remote(BrokerActor).options(num_cpus=0, max_concurrency=max(4, 2 * self.slots),
                                                max_restarts=3, max_task_retries=1, scheduling_strategy=here)
        handle = actor.remote(run_dir, backend, getattr(meter, "model", ""), getattr(meter, "budget", None),
                              getattr(meter, "budget_tokens", None), getattr(meter, "limits", None))
        ray.get(handle.ping.remote())  # fail here, not in the first task, when the actor cannot start
        return handle

    def _episode_ref(self, episode_id: str) -> Any:
        import ray

        ref = self._episode_refs.get(episode_id)
        if ref is None:  # shipped once per run, not once per task
            ref = self._episode_refs[episode_id] = ray.put(self.episodes[episode_id])
        return ref

    def _submit(self, job: EvalJob) -> Any:
        if self.on_start:
            self.on_start(job)
        call_id = f"{os.getpid()}:{next(self._ids)}"
        ref = self._task.remote(job, self._episode_ref(job.episode_id), self.spec, call_id)
        self._pending[ref] = (job, call_id)
        return ref

    def _result(self, ref: Any) -> JobResult:
        """The job's result; raises ``InfrastructureError`` when the cluster, not the job, failed."""
        import ray

        job, call_id = self._pending.pop(ref)
        try:
            res, _pid = ray.get(ref)
        except (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError,
                ray.exceptions.RaySystemError, ray.exceptions.RayActorError) as e:
            raise InfrastructureError("ray", f"a Ray node or worker went away under {job.program_id} / "
                                             f"{job.episode_id} ({type(e).__name__})") from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError) as e:
            detail = f"the Ray worker died {self.max_retries + 1} times running it: {type(e).__name__}"
            from mstar.harness.loader import from_source

            prog = from_source(job.source, name=job.program_id)
            res = evaluate_episode(prog, self.episodes[job.episode_id], _LostBackend(detail), Toolkit(), job.knobs,
                                   self.config)
        except ray.exceptions.RayTaskError as e:
            # A bug on the host side of the evaluation (or the budget): the same error inline would raise.
            # An InfrastructureError (the node's engine went away) goes up to ``map``, which retries.
            raise (e.cause if isinstance(e.cause, BaseException) else e) from None
        tokens, cost, exhausted = self._usage(call_id)
        if self.meter is not None and (tokens or cost or exhausted):
            # The engine's ledger is the meter the stops read: worker spend must show there too.
            self.meter.tokens += tokens
            self.meter.spent += cost
            if exhausted and hasattr(self.meter, "exhausted"):
                self.meter.exhausted = True  # type: ignore[attr-defined]
        return JobResult(job, res, llm_tokens=tokens, llm_cost=cost)

    def _usage(self, call_id: str) -> tuple[int, float, bool]:
        """What the job's LLM calls used, from the broker; an unreachable broker pauses the run."""
        import ray

        while True:
            try:
                return ray.get(self._broker.take_usage.remote(call_id))
            except (ray.exceptions.RayActorError, ray.exceptions.RaySystemError) as e:
                self.faults.fault(InfrastructureError("broker", f"the LLM broker actor does not answer "
                                                                f"({type(e).__name__})"), ("usage", call_id))

    def _check_slots(self) -> None:
        """Nothing finished for a while: if no live node offers a sandbox slot any more (the nodes that
        did were lost), pending tasks would wait forever. Pause until one joins, or stop the run."""
        if sandbox_slots() >= 1:
            return
        self.faults.fault(InfrastructureError("ray", f"no live node of the cluster offers {RESOURCE!r} slots "
                                                     "(nodes were lost); waiting for one to join"),
                          None, probe=lambda: sandbox_slots() >= 1)

    def map(self, jobs: Iterable[EvalJob]) -> Iterator[JobResult]:
        import ray

        todo = iter(jobs)
        again: list[EvalJob] = []  # jobs an infrastructure fault stopped: submitted again first
        mine: set[Any] = set()
        try:
            while True:
                # Top the window up only here, i.e. only while the caller is still iterating.
                while len(mine) < self.window:
                    job = again.pop(0) if again else next(todo, None)
                    if job is None:
                        break
                    mine.add(self._submit(job))
                if not mine:
                    return
                done, _ = ray.wait(list(mine), num_returns=1, timeout=SLOT_CHECK_S)
                if not done:
                    self._check_slots()
                    continue
                mine.discard(done[0])
                job = self._pending[done[0]][0]
                try:
                    jr = self._result(done[0])
                except InfrastructureError as e:
                    self.faults.fault(e, job.key)  # waits the backoff out, or stops the run
                    again.append(job)
                    continue
                self.faults.ok(job.key)
                yield jr
        finally:
            self._cancel(mine)

    def _cancel(self, refs: Iterable[Any]) -> None:
        import ray

        for ref in list(refs):
            self._pending.pop(ref, None)
            # Not force: a running task gets KeyboardInterrupt, so its session's close() still runs
            # and the sandbox (container, process group) goes away with it.
            try:
                ray.cancel(ref, force=False)
            except Exception:  # noqa: BLE001 - already finished or gone: nothing to cancel
                pass

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            self._cancel(list(self._pending))
            if self._broker is not None:
                ray.kill(self._broker)
                self._broker = None
        if self._started:
            stop_ray(self._temp)
            self._started = False
        self._remove_spares()

    def _remove_spares(self) -> None:
        """Ray ends its workers without running their exit hooks, so warm spare containers they held
        stay behind (exited, not removed): remove this run's containers by label on this node."""
        spec: WorkerSpec | None = getattr(self, "spec", None)
        run = dict(spec.labels).get("mstar.run") if spec is not None else None
        if spec is None or spec.backend != "docker" or not run:
            return
        from mstar.sandbox.docker_backend import cleanup, docker_client

        try:
            client = docker_client(timeout=10.0)
        except Exception:  # noqa: BLE001 - no engine any more: nothing we can remove
            return
        try:
            cleanup(client, run)
        finally:
            client.close()


def embedder_choice(toolkit: Toolkit) -> str:
    """Which of the local embedders ``toolkit`` uses, as the name a worker rebuilds it from.

    By type, not by ``embedder_name`` (a free label): a toolkit with any other embedder would silently
    be scored with a different one in the workers, so it is refused."""
    from mstar.embedders import HashingEmbedder, LocalSentenceEmbedder

    e = getattr(toolkit, "_embed", None)
    if type(e) is HashingEmbedder and e.dim == HashingEmbedder().dim:
        return "hashing"
    if type(e) is LocalSentenceEmbedder:
        return "local"
    raise UsageError(f"the ray executor rebuilds the run's embedder in each worker by name and knows only "
                     f"hashing and local (all-MiniLM-L6-v2), not {e!r}: use --executor inline")


def _backend_name(backend: Any) -> str:
    """The backend's registry name; ``auto`` is settled here, once, so every worker uses the same one."""
    name = backend if isinstance(backend, str) else getattr(backend, "name", None)
    if not name:
        raise UsageError(f"the ray executor needs a sandbox backend name, not {backend!r}")
    from mstar.sandbox.registry import settle

    return settle(name)[0]
