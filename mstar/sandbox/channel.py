"""The byte level of the host <-> runner channel, shared by the ``process`` and ``docker`` backends.

A transport gives one file descriptor the host writes requests to (a pipe, or the attach socket) and
one or two it reads from (the stdout and stderr pipes, or the same socket carrying Docker's multiplexed
frames). Reading happens in the calling thread, only while a call is in flight (the runner is idle
otherwise): no pump thread, so a call costs one wake-up each way. Every read is bounded: stdout is cut
into lines, and a line longer than the limit is an ``output_flood``; of stderr only the tail is kept.
While the host sends, it also drains what the runner writes, so neither side can block the other.
"""

from __future__ import annotations

import os
import select
import struct
import time
from collections import deque
from collections.abc import Callable

EOF = object()
FLOOD = object()


class LineBuffer:
    """Bytes in, complete lines out; one line over ``max_bytes`` poisons the buffer (``FLOOD``)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.lines: deque[object] = deque()
        self._parts: list[bytes] = []
        self._size = 0
        self.dead = False

    def feed(self, data: bytes) -> None:
        if self.dead:
            return
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            piece = data[start:nl]
            if self._size + len(piece) > self.max_bytes:
                return self._flood()
            if self._parts:
                self._parts.append(piece)
                piece = b"".join(self._parts)
                self._parts, self._size = [], 0
            self.lines.append(piece)
            start = nl + 1
        rest = data[start:]
        if rest:
            self._size += len(rest)
            if self._size > self.max_bytes:
                return self._flood()
            self._parts.append(rest)

    def _flood(self) -> None:
        self.dead = True
        self._parts, self._size = [], 0
        self.lines.append(FLOOD)

    def close(self) -> None:
        if not self.dead:
            self.dead = True
            self.lines.append(EOF)


class Tail:
    """The last ``keep`` bytes of a stream (stderr): enough for a traceback, never more."""

    def __init__(self, keep: int = 16_384):
        self.keep = keep
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self._chunks.append(data)
        self._size += len(data)
        while self._size - len(self._chunks[0]) >= self.keep:
            self._size -= len(self._chunks.popleft())

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0

    def text(self, limit: int = 4000) -> str:
        return b"".join(self._chunks)[-limit:].decode("utf-8", "replace")


class Demux:
    """Docker's attach stream without a TTY: frames of ``[stream, 0, 0, 0, size(4, big-endian)] + data``."""

    def __init__(self, stdout: Callable[[bytes], None], stderr: Callable[[bytes], None]):
        self.sinks = {1: stdout, 2: stderr}
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data
        while len(self._buf) >= 8:
            kind, size = struct.unpack_from(">BxxxL", self._buf)
            if len(self._buf) < 8 + size:
                break
            payload = bytes(self._buf[8 : 8 + size])
            del self._buf[: 8 + size]
            sink = self.sinks.get(kind)
            if sink is not None:
                sink(payload)


class Conn:
    """Non-blocking fds to and from one runner. ``reads`` maps each fd to the sink of its bytes; the
    first fd is the one whose EOF ends the channel (stdout, or the attach socket)."""

    def __init__(self, write_fd: int, reads: dict[int, Callable[[bytes], None]], lines: LineBuffer):
        self.write_fd = write_fd
        self.reads = dict(reads)
        self.main_fd = next(iter(self.reads))
        self.lines = lines
        self.open_reads = set(self.reads)
        for fd in {write_fd, *self.reads}:
            os.set_blocking(fd, False)

    def _drain(self, fds: list[int]) -> None:
        for fd in fds:
            try:
                data = os.read(fd, 1 << 18)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                self.reads[fd](data)
                continue
            self.open_reads.discard(fd)
            if fd == self.main_fd:
                self.lines.close()

    def send(self, data: bytes, deadline: float) -> None:
        """Write all of ``data`` before ``deadline`` (``TimeoutError``), draining the runner's output."""
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the sandbox stopped reading its input")
            readable, writable, _ = select.select(list(self.open_reads), [self.write_fd], [], min(left, 1.0))
            self._drain(readable)
            if writable:
                try:
                    view = view[os.write(self.write_fd, view) :]
                except (BlockingIOError, InterruptedError):
                    continue

    def recv(self, deadline: float) -> object | None:
        """The next stdout line (bytes), ``EOF``, ``FLOOD``, or None when the deadline passes first."""
        while not self.lines.lines:
            left = deadline - time.monotonic()
            if left <= 0 or not self.open_reads:
                return None if left <= 0 else EOF
            readable, _, _ = select.select(list(self.open_reads), [], [], left)
            self._drain(readable)
        return self.lines.lines.popleft()

    def drain_stderr(self, wait_s: float) -> None:
        """After the runner ended: read what is left on the other fds (for the error's detail)."""
        end = time.monotonic() + wait_s
        while self.open_reads and time.monotonic() < end:
            readable, _, _ = select.select(list(self.open_reads), [], [], max(0.0, end - time.monotonic()))
            if not readable:
                break
            self._drain(readable)

    def quiet(self) -> bool:
        """True when the runner has said nothing on stdout and not ended: a spare still waiting for work."""
        if self.open_reads:
            readable, _, _ = select.select(list(self.open_reads), [], [], 0)
            self._drain(readable)
        return not self.lines.lines and self.main_fd in self.open_reads
