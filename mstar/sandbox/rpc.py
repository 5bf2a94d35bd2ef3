"""The host side of the runner protocol (``sandbox/runner.py``): one class for every isolating backend.

A backend only supplies a ``Transport`` (how bytes reach the runner and how it is killed); this class
does the JSON-RPC, the deadlines, the answers to the runner's ``llm`` / ``embed`` requests, and the
mapping of every way a runner can misbehave to a ``CandidateFailure`` with a specific reason:

- ``timeout``        no reply before the call's deadline (or the episode's)
- ``output_flood``   a reply line over ``SessionLimits.max_reply_bytes``
- ``protocol_error`` a line on the protocol channel that is not a well-formed message of the expected
                     shape (``wire.py``: depth, JSON, the type of every field), or a reply out of turn
- ``oom`` / ``crash``  the runner died (the transport tells which from the exit status)
- whatever the runner reported: ``load_error``, ``crash``, ``needs_llm``, ``oom``, ``bad_output``,
  ``forbidden`` (the runner's guard caught a process / network / native / write attempt),
  ``resource_limit`` (a pids / files / file-size limit was hit)

Time the host spends answering ``llm`` does not count against the deadlines (a model call has the
broker's own timeout and caps); time spent on ``embed`` does: the candidate chooses how much it embeds,
so host CPU it makes us burn is its own time (and capped per episode, see ``mstar.llm_limits``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from mstar.errors import BudgetExceeded, CandidateFailure, InfrastructureError, LLMUnavailable
from mstar.harness.loader import HarnessProgram
from mstar.sandbox import wire
from mstar.sandbox.base import SessionLimits
from mstar.sandbox.channel import EOF, FLOOD, Conn, Tail
from mstar.toolkit import Toolkit

MAX_EMBED_TEXTS = 10_000


class Transport(Protocol):
    conn: Conn
    stderr: Tail

    def close_input(self) -> None:
        """Half-close: the runner sees EOF on stdin and exits on its own."""

    def exit_reason(self, wait_s: float) -> tuple[str, str] | None:
        """After EOF: (reason, detail) from how the runner ended (e.g. OOM-killed), or None if unknown."""

    def kill(self) -> None:
        """Kill the runner and everything it started, and release every resource. Idempotent."""

    def alive(self) -> bool:
        """The runner is up and has said nothing yet (a warm spare fit for a session)."""


def _json_safe_kw(kw: Any) -> dict[str, Any]:
    # Keyword names become Python keywords on the host: str keys only (the broker allow-lists them).
    return {k: v for k, v in kw.items() if isinstance(k, str)} if isinstance(kw, dict) else {}


class RpcSession:
    def __init__(self, transport: Transport, program: HarnessProgram, knobs: dict[str, Any], toolkit: Toolkit,
                 limits: SessionLimits, give_back: Callable[[Transport], None] | None = None):
        self.t = transport
        self._give_back = give_back
        self.toolkit = toolkit
        self.limits = limits
        self.program = program
        self._n = 0
        self._said_unavailable = False  # the host answered a model call "unavailable": needs_llm is genuine
        self._dead: CandidateFailure | None = None
        self._closed = False
        self._episode_end = time.monotonic() + limits.episode_timeout_s
        try:
            self.info = self._call("load", {
                "source": program.source, "path": program.path, "name": program.name, "knobs": knobs,
                "has_llm": toolkit.has_llm, "embedder_name": getattr(toolkit, "embedder_name", "hashing"),
            })
        except BaseException:
            self.close()
            raise

    # --- HarnessSession ---------------------------------------------------------------------------
    def write(self, events: list[dict[str, Any]]) -> list[float]:
        return [float(x) for x in self._call("write", {"events": events}, n=len(events))]

    def manage(self, phase: str) -> float:
        return float(self._call("manage", {"phase": phase}))

    def read(self, query: dict[str, Any]) -> tuple[Any, float]:
        res = self._call("read", {"query": query})
        return res["value"], float(res["ms"])

    def read_many(self, queries: list[dict[str, Any]]) -> list[tuple[Any, float]]:
        """``read`` for each query, in order, in one round trip; each result is judged like a single read.

        On a failure after some reads, the ``CandidateFailure`` raised carries them in ``.partial``, so
        a caller scores exactly what one-by-one reads would have given it.
        """
        out: list[tuple[Any, float]] = []
        try:
            def take(r: dict[str, Any]) -> None:
                if len(out) >= len(queries):  # more results than queries: never buffered without bound
                    raise wire.ProtocolViolation("read_many: more partial results than queries")
                out.append((r["value"], float(r["ms"])))

            self._call("read_many", {"queries": queries}, n=len(queries), on_partial=take)
        except CandidateFailure as e:
            e.partial = out
            raise
        if len(out) != len(queries):
            raise self._fail("protocol_error", "read_many: the runner's replies do not match the queries")
        return out

    def dump(self) -> list[dict[str, Any]] | None:
        return self._call("dump", {})["value"]

    def release(self) -> None:
        """The episode ended cleanly: hand the runner back for the next session of the same program
        (``give_back`` decides; warm.py), or close when anything went wrong in this session."""
        if self._closed:
            return
        if self._dead is not None or self._give_back is None:
            return self.close()
        self._closed = True
        try:
            self._give_back(self.t)
        except BaseException:
            self.t.kill()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._dead is None:
                self.t.close_input()
        finally:
            self.t.kill()

    # --- the protocol -----------------------------------------------------------------------------
    def _fail(self, reason: str, detail: str) -> CandidateFailure:
        """Mark the session dead (the runner is killed at once) and return the failure to raise."""
        tail = self.t.stderr.text(1500).strip()
        if tail and reason not in ("needs_llm",):
            detail = f"{detail}\n--- sandbox stderr (tail) ---\n{tail}"
        self._dead = CandidateFailure(reason, detail)
        self.t.kill()
        return self._dead

    def _call(self, method: str, params: dict[str, Any], on_partial: Callable[[Any], None] | None = None,
              n: int = 0) -> Any:
        if self._dead is not None:
            raise CandidateFailure(self._dead.reason, self._dead.detail)
        if self._closed:
            raise CandidateFailure("protocol_error", f"{method}: the session is closed")
        self._n += 1
        rid = self._n
        start = time.monotonic()
        deadline = min(start + self.limits.call_timeout_s, self._episode_end)
        try:
            line = json.dumps({"id": rid, "method": method, "params": params}, ensure_ascii=False,
                              separators=(",", ":")).encode("utf-8") + b"\n"
        except (TypeError, ValueError) as e:  # the host's own data: a bug, not the candidate's fault
            raise ValueError(f"sandbox: cannot encode {method} request: {e}") from e
        try:
            self.t.conn.send(line, deadline)
        except TimeoutError:
            raise self._fail("timeout", f"{method}: the sandbox stopped reading (deadline {self._limit_s(deadline, start):.0f}s)") from None
        except OSError:
            raise self._eof(method) from None
        try:
            return self._replies(method, rid, deadline, start, on_partial, n)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
            # A safety net under wire.py: no byte from the sandbox may raise out of here as a host error.
            what = str(e) if isinstance(e, wire.ProtocolViolation) else f"malformed message ({type(e).__name__})"
            raise self._fail("protocol_error", f"{method}: {what}") from None

    def _replies(self, method: str, rid: int, deadline: float, start: float,
                 on_partial: Callable[[Any], None] | None, n: int) -> Any:
        while True:
            msg = self._next(method, deadline, start)
            mid = msg["id"]
            if "method" in msg:
                t0 = time.monotonic()
                self._serve(mid, msg["method"], msg["params"], deadline)
                if msg["method"] == "llm":  # model calls are the host's time; embeds are the candidate's
                    spent = time.monotonic() - t0
                    deadline += spent
                    self._episode_end += spent
                continue
            if mid != rid:
                raise self._fail("protocol_error", f"{method}: reply for id {mid!r}, expected {rid}")
            if "partial" in msg:
                if on_partial is None:
                    raise self._fail("protocol_error", f"{method}: a partial result to a call that streams none")
                on_partial(msg["partial"])
                start = time.monotonic()  # each streamed read gets the per-call deadline
                deadline = min(start + self.limits.call_timeout_s, self._episode_end)
                continue
            if "error" in msg:
                reason, detail = msg["error"]["reason"], msg["error"]["detail"]
                if reason == "needs_llm" and self.toolkit.has_llm and not self._said_unavailable:
                    raise self._fail("protocol_error", f"{method}: needs_llm reported while the model was available")
                raise self._fail(reason, detail[:8000])
            try:
                return wire.check_result(method, msg["result"], n)
            except wire.ProtocolViolation as e:
                raise self._fail("protocol_error", str(e)) from None

    def _limit_s(self, deadline: float, start: float) -> float:
        return max(0.0, deadline - start)

    def _next(self, method: str, deadline: float, start: float) -> dict[str, Any]:
        item = self.t.conn.recv(deadline)
        if item is None:
            which = "episode" if deadline >= self._episode_end else "call"
            raise self._fail("timeout", f"{method}: no reply within the {which} deadline "
                                        f"({self._limit_s(deadline, start):.0f}s)")
        if item is FLOOD:
            raise self._fail("output_flood", f"{method}: a reply line over {self.limits.max_reply_bytes:,} bytes")
        if item is EOF:
            raise self._eof(method)
        try:
            return wire.parse(item)  # type: ignore[arg-type]
        except wire.ProtocolViolation as e:
            raise self._fail("protocol_error", f"{method}: {e}") from None

    def _eof(self, method: str) -> CandidateFailure:
        why = self.t.exit_reason(2.0)
        reason, detail = why or ("crash", "the sandbox exited without a reply")
        return self._fail(reason, f"{method}: {detail}")

    # --- answering the runner ---------------------------------------------------------------------
    def _serve(self, cid: str, method: Any, params: dict[str, Any], deadline: float) -> None:
        try:
            if method == "llm":
                msgs = params.get("messages")
                if not isinstance(msgs, list | str):
                    raise ValueError("llm: messages must be a list of {role, content} or a str")
                result: Any = self.toolkit.llm(msgs, **_json_safe_kw(params.get("kw")))
                if not isinstance(result, str):
                    result = str(result)
            elif method == "embed":
                texts = params.get("texts")
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise ValueError("embed: texts must be a list of str")
                if len(texts) > MAX_EMBED_TEXTS:
                    raise ValueError(f"embed: at most {MAX_EMBED_TEXTS} texts per call")
                result = [list(map(float, v)) for v in self.toolkit.embed(texts)]
            else:
                raise ValueError(f"unknown host method {method!r}")
            reply: dict[str, Any] = {"id": cid, "result": result}
        except BudgetExceeded as e:
            # The run's hard budget is spent (or its model stopped answering, ModelUnreachable): the
            # evaluation stops here, unscored, not just this candidate.
            self._dead = CandidateFailure("budget", str(e)[:300])
            self.t.kill()
            raise
        except InfrastructureError:
            # The broker went away: the evaluation is retried later, the harness is never told.
            self.t.kill()
            raise
        except CandidateFailure as e:
            # A quota the candidate exhausted (its share of the LLM budget, embed calls): it fails here.
            raise self._fail(e.reason, e.detail) from None
        except LLMUnavailable as e:
            self._said_unavailable = True
            reply = {"id": cid, "error": {"kind": "unavailable", "message": str(e)}}
        except Exception as e:  # noqa: BLE001 - any broker failure is reported to the harness, which may cope
            reply = {"id": cid, "error": {"kind": "error", "message": f"{type(e).__name__}: {str(e)[:500]}"}}
        data = json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        try:
            self.t.conn.send(data, max(deadline, time.monotonic() + 30.0))
        except TimeoutError:
            raise self._fail("timeout", f"{method}: the sandbox stopped reading") from None
        except OSError:
            raise self._eof(str(method)) from None


class PooledBackend:
    """What the docker and process backends share: sessions are RpcSessions over runners taken from
    their ``WarmPool`` (a spare, an idle runner of the same program, or a fresh start) and given back
    to it when an episode ends cleanly. A subclass sets ``self.pool``."""

    pool: Any

    def prewarm(self, program: HarnessProgram, limits: SessionLimits, labels: dict[str, str] | None = None) -> None:
        """Start a sandbox for ``program``'s first session now, in the background."""
        self.pool.prewarm(limits, labels or {}, program.source)

    def open(self, program: HarnessProgram, knobs: dict[str, Any], toolkit: Toolkit, limits: SessionLimits,
             labels: dict[str, str] | None = None) -> RpcSession:
        labels = dict(labels or {})
        return RpcSession(self.pool.take(limits, labels, program.source), program, knobs, toolkit, limits,
                          give_back=lambda t: self.pool.give_back(t, limits, labels, program.source))
