"""A second Docker engine owned by one test: its own socket, data root, exec root, pid file and managed
containerd, no bridge and no iptables (sandboxes run with network none). A test may stop and restart
it at will; the machine's own engine, which other tests use, is never touched.

Only processes this module started are ended: the dockerd by its pid, and what it leaves behind
(its containerd and shims) found by command lines naming this engine's private directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path


class PrivateDockerd:
    def __init__(self) -> None:
        # Short: the socket path must fit in a unix socket address (107 bytes), containerd's too.
        self.dir = Path(tempfile.mkdtemp(prefix="mstar-dk-", dir="/tmp"))
        self.sock = self.dir / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "dockerd.log"

    def start(self, timeout: float = 60.0) -> None:
        args = ["dockerd", "--host", self.host, "--data-root", str(self.dir / "data"),
                "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.dir / "docker.pid"),
                "--bridge=none", "--iptables=false", "--ip6tables=false", "--shutdown-timeout", "2"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"private dockerd exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError("private dockerd did not answer in time")

    def answers(self) -> bool:
        r = subprocess.run(["docker", "-H", self.host, "version", "--format", "{{.Server.Version}}"],
                           capture_output=True, timeout=20)
        return r.returncode == 0

    def stop(self, timeout: float = 60.0) -> None:
        """As `systemctl stop docker` does: SIGTERM, the engine stops its containers and exits."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def load_image(self, tag: str) -> None:
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        r = subprocess.run(["docker", "-H", self.host, "load", "-q"], stdin=save.stdout, capture_output=True,
                           text=True, timeout=300)
        save.stdout.close()
        save.wait(60)
        if r.returncode != 0 or save.returncode != 0:
            raise RuntimeError(f"cannot load {tag} into the private engine: {r.stderr[-1000:]}")

    def close(self) -> None:
        self.stop()
        self._end_leftovers()
        self._unmount()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _end_leftovers(self) -> None:
        """containerd and shims of this engine only: their command lines name its private directory."""
        mark = str(self.dir)
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if mark in cmd:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _unmount(self) -> None:
        mark = str(self.dir)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(mark)]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
