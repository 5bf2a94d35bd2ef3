"""mstar sandbox runner: hosts one harness ``Memory`` and speaks line-delimited JSON-RPC with the host.

Standard library only: it runs inside the sandbox image (and as the ``process`` backend's subprocess),
where mstar itself is not installed. One request per line on stdin, one reply per line on stdout:

    host -> runner  {"id": 1, "method": "load" | "write" | "manage" | "read" | "read_many" | "dump", "params": {...}}
    runner -> host  {"id": 1, "result": ...}   or   {"id": 1, "error": {"reason": "crash", "detail": "..."}}

``read_many`` streams one ``{"id": 1, "partial": {"value": ..., "ms": ...}}`` line per query before its result.

While it serves a request the runner may ask the host for a model call, and blocks for the answer:

    runner -> host  {"id": "c1", "method": "llm" | "embed", "params": {...}}
    host -> runner  {"id": "c1", "result": ...}  or  {"id": "c1", "error": {"kind": "unavailable", "message": "..."}}

The real stdout is kept (dup) for the protocol and fd 1 is pointed at stderr, so a harness's ``print``
cannot corrupt the channel. Logs go to stderr only. A guard (an audit hook, on unless the host asks
otherwise) turns process, native-code, network and out-of-tmp write attempts into failures with
reason ``forbidden``; it is a second layer, not the boundary: the container or rlimits are.
"""

import errno
import functools
import json
import linecache
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import types

PROTOCOL = 1
MAIN_PID = os.getpid()
# The temp dir as the runner starts, before any harness code could change ``tempfile.tempdir``.
TMP_DIR = os.path.realpath(tempfile.gettempdir())
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")  # the host's one token counter (mstar/tokens.py)


@functools.lru_cache(maxsize=1 << 16)
def _count_tokens(text):
    return len(_TOKEN_RE.findall(text))


class LLMUnavailable(Exception):
    """The run has no model: a harness that needs one is skipped offline, never faked."""


class LLMError(RuntimeError):
    """The host could not complete a model call (after its retries); the harness may handle it."""


class ProtocolError(Exception):
    pass


# --- the channel --------------------------------------------------------------------------------
class Channel:
    def __init__(self, rfile, wfile):
        self.r, self.w = rfile, wfile
        self.n = 0

    def send(self, obj):
        self.w.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
        self.w.flush()

    def recv(self):
        line = self.r.readline()
        if not line:
            raise EOFError("host closed the channel")
        return json.loads(line)

    def request(self, method, params):
        """Ask the host and block for its answer (the host answers in order; nothing else arrives)."""
        self.n += 1
        rid = f"c{self.n}"
        self.send({"id": rid, "method": method, "params": params})
        msg = self.recv()
        if msg.get("id") != rid:
            raise ProtocolError(f"expected the answer to {rid}, got {str(msg)[:200]}")
        if "error" in msg:
            err = msg["error"] or {}
            kind, text = err.get("kind", "error"), err.get("message", "")
            if kind == "unavailable":
                raise LLMUnavailable(text or "this run has no model")
            raise LLMError(f"{method}: {text}")
        return msg.get("result")


class Toolkit:
    """The in-sandbox toolkit (docs/ARCHITECTURE.md#harness-contract): ``llm`` and ``embed`` are calls to the host's broker."""

    LLMUnavailable = LLMUnavailable
    LLMError = LLMError

    def __init__(self, channel, has_llm, embedder_name):
        self._channel = channel
        self._has_llm = bool(has_llm)
        self.embedder_name = embedder_name
        self._logged = 0

    @property
    def has_llm(self):
        return self._has_llm

    def llm(self, messages, **kw):
        if not self._has_llm:  # answered locally: saves a round trip, same error as the host's
            raise LLMUnavailable("this run has no model: pass --model to enable LLM calls")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return _host_call(self._channel, "llm", {"messages": messages, "kw": kw})

    def embed(self, texts):
        if isinstance(texts, str):
            texts = [texts]
        return _host_call(self._channel, "embed", {"texts": list(texts)})

    def count_tokens(self, text):
        # Packing re-counts the same records at every read: memoised like the host's (mstar/tokens.py),
        # record-sized texts only.
        if type(text) is str and len(text) <= 4096:
            return _count_tokens(text)
        return len(_TOKEN_RE.findall(str(text)))

    def log(self, msg):
        # Bounded like the host toolkit's, so a chatty harness cannot flood the host's stderr reader.
        if self._logged < 1000:
            self._logged += 1
            print(f"[harness] {str(msg)[:2000]}", file=sys.stderr, flush=True)


def _host_call(channel, method, params):
    # The host's answer must not be read by a forked child: only the runner process talks.
    was = _GUARD.armed
    _GUARD.armed = False
    try:
        return channel.request(method, params)
    finally:
        _GUARD.armed = was


# --- the guard ----------------------------------------------------------------------------------
_PROC_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
                "os.kill", "os.killpg", "pty.spawn")
_NET_EVENTS = ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo")
_NATIVE_EVENTS = ("ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "ctypes.addressof")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class _Guard:
    """Audit hook armed only while harness code runs; remembers the first violation even if caught."""

    def __init__(self):
        self.enabled = False
        self.armed = False
        self.violation = None
        roots = {os.path.realpath(tempfile.gettempdir()), os.path.realpath(os.getcwd()), "/dev/null"}
        self.writable = tuple(sorted(roots))

    def _deny(self, what):
        if self.violation is None:
            self.violation = what
        raise PermissionError(errno.EPERM, f"sandbox: {what} is not allowed")

    def hook(self, event, args):
        if not self.armed:
            return
        if event.startswith(_PROC_EVENTS):
            self._deny(f"{event} (starting processes)")
        elif event.startswith(_NET_EVENTS):
            self._deny(f"{event} (network)")
        elif event.startswith(_NATIVE_EVENTS) or (event == "ctypes.dlopen" and args and args[0] is not None):
            self._deny(f"{event} (native code)")
        elif event == "open" and len(args) >= 3 and isinstance(args[0], str | bytes):
            flags = args[2] if isinstance(args[2], int) else 0
            mode = args[1] if isinstance(args[1], str) else ""
            if flags & _WRITE_FLAGS or any(c in mode for c in "wax+"):
                path = os.path.realpath(os.fsdecode(args[0]))
                if not any(path == r or path.startswith(r + os.sep) for r in self.writable):
                    self._deny(f"writing {path} (only the temp dir is writable)")


_GUARD = _Guard()


# --- serving requests ---------------------------------------------------------------------------
def _jsonable(obj):
    """What ``json`` cannot encode but a harness plausibly returns (numpy values, sets, models)."""
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if hasattr(obj, "model_dump") and callable(obj.model_dump):
        return obj.model_dump()
    raise TypeError(f"value of type {type(obj).__name__} is not JSON")


HARNESS_FILE = [None]  # the loaded harness's file name: its frames are the ones a user can act on


def _tb_tail(exc, frames=4):
    """The harness's own frames (file:line and code, innermost last) and the exception with its message,
    never the runner's: a user fixes their file, not ours. Falls back to the last frames when none is
    the harness's (e.g. the error is inside numpy, called from the harness: that call is shown too)."""
    tb = traceback.extract_tb(exc.__traceback__)
    own = [f for f in tb if f.filename == HARNESS_FILE[0]]
    if not own:
        own = [f for f in tb if f.filename != __file__][-frames:]
    else:
        last = tb.index(own[-1])
        own = own[-frames:] + [f for f in tb[last + 1 :] if f.filename != __file__][-2:]
    lines = ["Traceback (harness frames):"]
    for f in own:
        lines.append(f'  File "{f.filename}", line {f.lineno}, in {f.name}')
        if f.line:
            lines.append(f"    {f.line.strip()}")
    lines += [ln.rstrip() for ln in traceback.format_exception_only(type(exc), exc)][-3:]
    return "\n".join(lines)


class Failure(Exception):
    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


_FORBIDDEN_ERRNO = {errno.EPERM, errno.EACCES, errno.EROFS, errno.ENETUNREACH, errno.EHOSTUNREACH,
                    errno.ECONNREFUSED, errno.EADDRNOTAVAIL}
_LIMIT_ERRNO = {errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.ENOMEM}


def _classify(exc, what):
    """Map an exception out of harness code to (reason, detail), like the inline backend does."""
    if isinstance(exc, LLMUnavailable):
        return "needs_llm", str(exc)
    if isinstance(exc, MemoryError):
        return "oom", f"MemoryError in {what}"
    if isinstance(exc, RecursionError):
        return "crash", f"RecursionError in {what}"
    if isinstance(exc, OSError) and exc.errno in _FORBIDDEN_ERRNO:
        return "forbidden", f"in {what}: {_tb_tail(exc)}"
    if isinstance(exc, OSError) and exc.errno in _LIMIT_ERRNO:
        return "resource_limit", f"in {what}: {_tb_tail(exc)}"
    return "crash", f"in {what}: {_tb_tail(exc)}"


def _harness(fn, what):
    """Run harness code with the guard armed; any way out of it becomes a ``Failure``."""
    _GUARD.armed = _GUARD.enabled
    try:
        out = fn()
    except (KeyboardInterrupt, SystemExit) as e:
        out, err = None, Failure("crash", f"in {what}: {type(e).__name__} raised by the harness")
    except BaseException as e:  # noqa: BLE001 - everything the harness raises is the harness's failure
        out, err = None, Failure(*_classify(e, what))
    else:
        err = None
    finally:
        _GUARD.armed = False
    if os.getpid() != MAIN_PID:
        os._exit(0)  # a child the harness forked never speaks on the channel
    if _GUARD.violation is not None:
        raise Failure("forbidden", f"in {what}: {_GUARD.violation}")
    if err is not None:
        raise err
    return out


class _Flusher:
    """Flushes a buffered writer ``DELAY`` seconds after ``soon()``, from its own daemon thread.

    ``BufferedWriter`` has its own lock, so a flush here and a write or flush in the main thread never
    interleave within a line. Started outside harness code, so the guard never sees it."""

    DELAY = 0.002

    def __init__(self, w):
        self.w = w
        self.cv = threading.Condition()
        self.dirty = False
        threading.Thread(target=self._run, daemon=True, name="mstar-flush").start()

    def soon(self):
        with self.cv:
            if not self.dirty:
                self.dirty = True
                self.cv.notify()

    def _run(self):
        while True:
            with self.cv:
                while not self.dirty:
                    self.cv.wait()
            time.sleep(self.DELAY)
            with self.cv:
                self.dirty = False
            try:
                self.w.flush()
            except (OSError, ValueError):  # the host went away: the main thread ends the runner
                return


def _clear_dir(path):
    # Entries only, never following a link out of the directory (the guard is not armed here).
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


class Runner:
    def __init__(self, channel):
        self.channel = channel
        self.memory = None
        self._rid = None
        self._flusher = None

    def load(self, p):
        if self.memory is not None:  # a runner reused for the program's next episode: start from an empty /tmp
            _clear_dir(TMP_DIR)
            self.memory = None
        module = types.ModuleType(f"mstar_harness_{p.get('name', 'candidate')}")
        module.__file__ = p.get("path", "<harness>")
        HARNESS_FILE[0] = module.__file__
        # The source is not on this filesystem: give it to linecache so tracebacks quote its lines.
        linecache.cache[module.__file__] = (len(p["source"]), None, p["source"].splitlines(True), module.__file__)
        try:
            code = compile(p["source"], module.__file__, "exec")
            _harness(lambda: exec(code, module.__dict__), "load")  # noqa: S102 - loading a program
        except SyntaxError as e:
            raise Failure("load_error", f"syntax error: {e}") from None
        except Failure as f:
            if f.reason == "crash":
                f.reason = "load_error"
            raise
        if not isinstance(getattr(module, "INSTRUCTIONS", None), str):
            raise Failure("load_error", f"{module.__file__}: INSTRUCTIONS must be a str")
        if not isinstance(getattr(module, "Memory", None), type):
            raise Failure("load_error", f"{module.__file__}: missing class Memory")
        toolkit = Toolkit(self.channel, p.get("has_llm", False), p.get("embedder_name", "hashing"))
        knobs = dict(p.get("knobs") or {})
        self.memory = _harness(lambda: module.Memory(toolkit, knobs), "init")
        return {"pid": os.getpid(), "python": sys.version.split()[0]}

    def write(self, p):
        w, out = self.memory.write, []
        for ev in p["events"]:
            t0 = time.perf_counter()
            _harness(lambda ev=ev: w(ev), "write")
            out.append((time.perf_counter() - t0) * 1000)
        return out

    def manage(self, p):
        fn = getattr(self.memory, "manage", None)
        if fn is None:
            return 0.0
        t0 = time.perf_counter()
        _harness(lambda: fn(p["phase"]), "manage")
        return (time.perf_counter() - t0) * 1000

    def read(self, p):
        t0 = time.perf_counter()
        res = _harness(lambda: self.memory.read(dict(p["query"])), "read")
        return {"value": res, "ms": (time.perf_counter() - t0) * 1000}

    def dump(self, p):
        fn = getattr(self.memory, "dump", None)
        return {"value": None if fn is None else _harness(fn, "dump")}

    def read_many(self, p):
        """Reads in a row, one request: each result goes back as its own ``partial`` line, so each is
        bounded and judged like a single ``read``, and a failure keeps the results before it.

        Partial lines are flushed by a thread a moment after they are written, not one by one: a flush
        per line costs a wake-up of every process on the way to the host (through the engine for
        docker), more than a read. The thread also flushes while a read hangs, so the host still gets
        every result before it."""
        queries = p["queries"]
        flusher = self._flusher or _Flusher(self.channel.w)
        self._flusher = flusher
        for q in queries:
            self.channel.w.write(self._encode({"id": self._rid, "partial": self.read({"query": q})}, "read") + b"\n")
            flusher.soon()
        return {"n": len(queries)}

    METHODS = ("load", "write", "manage", "read", "read_many", "dump")

    def serve(self):
        while True:
            try:
                msg = self.channel.recv()
            except EOFError:
                return 0
            self._rid, method = msg.get("id"), msg.get("method")
            handler = getattr(self, method, None) if method in self.METHODS else None
            if handler is None:
                self.channel.send({"id": self._rid, "error": {"reason": "protocol_error", "detail": f"unknown method {method!r}"}})
                continue
            if method != "load" and self.memory is None:
                self.channel.send({"id": self._rid, "error": {"reason": "protocol_error", "detail": "no program loaded"}})
                continue
            try:
                line = self._encode({"id": self._rid, "result": handler(msg.get("params") or {})}, method)
            except Failure as f:
                line = self._encode({"id": self._rid, "error": {"reason": f.reason, "detail": f.detail[-4000:]}}, method)
            self._send(line)

    def _encode(self, reply, method):
        """One protocol line; a value JSON cannot carry is the harness's ``bad_output``."""
        try:
            return json.dumps(reply, ensure_ascii=False, separators=(",", ":"), default=_jsonable).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as e:
            raise Failure("bad_output", f"{method}() returned a value that cannot be sent as JSON: {e}") from None
        except MemoryError:
            raise Failure("oom", f"MemoryError encoding the result of {method}()") from None

    def _send(self, line):
        self.channel.w.write(line + b"\n")
        self.channel.w.flush()


def _setup_stdio():
    """Keep private copies of the protocol fds; point fd 0 at /dev/null and fd 1 at stderr."""
    proto_in, proto_out = os.dup(0), os.dup(1)  # os.dup makes them non-inheritable: children lack them
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    sys.stdout = sys.stderr
    return os.fdopen(proto_in, "rb", buffering=1 << 16), os.fdopen(proto_out, "wb", buffering=1 << 16)


def main():
    # Past RLIMIT_FSIZE a write should fail with EFBIG (a clear error), not kill the runner with SIGXFSZ.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    rfile, wfile = _setup_stdio()
    _GUARD.enabled = "--no-guard" not in sys.argv
    if "--site" in sys.argv:
        # The process sandbox (bwrap) starts Python with -S and binds the allow-list here, alone.
        sys.path.append(sys.argv[sys.argv.index("--site") + 1])
    sys.addaudithook(_GUARD.hook)
    if "--preload" in sys.argv:
        # A warm spare imports the allow-list while it waits for its program (the guard is not armed).
        names = sys.argv[sys.argv.index("--preload") + 1 :][:1]
        for name in (names[0].split(",") if names else []):
            try:
                __import__(name)
            except Exception:  # noqa: BLE001 - a missing module fails later, in the harness's own import
                pass
    return Runner(Channel(rfile, wfile)).serve()


if __name__ == "__main__":
    sys.exit(main())
