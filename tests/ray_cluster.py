"""A real multi-node Ray cluster on this machine, owned by one test: `ray start --head` and more nodes
with `ray start --address`, each node with its own temp dir and its own free ports (other tests run
their own Ray instances on the same machine at the same time).

Never `ray stop` (it ends every Ray process of the machine): a node is killed by its raylet's pid and
the whole cluster is reaped by its temp dirs (``mstar.evolve.execution.ray_cleanup.reap``). The root is not named
``/tmp/mstar-ray-*``, so no mstar run's sweep mistakes it for a dead run's instance.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mstar-rt-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, Path] = {}
        # Token auth as Ray >= 2.59 does by default, with a token in the environment (nothing in $HOME).
        # Node deaths are noticed within ~3 s instead of Ray's default ~15 s: keeps the test short.
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_health_check_period_ms": "1000",
                    "RAY_health_check_failure_threshold": "3", "RAY_health_check_timeout_ms": "1000"}

    def _start(self, name: str, extra: list[str], resources: dict[str, float]) -> None:
        temp = self.root / name
        temp.mkdir()
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
        args = [RAY, "start", *extra, "--temp-dir", str(temp), "--num-cpus", "1", "--object-store-memory",
                str(96 * 1024**2), "--resources", json.dumps(resources), "--disable-usage-stats"]
        for flag in ports:
            args += [flag, str(free_port())]
        r = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"ray start ({name}) failed: {r.stdout[-1500:]}{r.stderr[-1500:]}")
        self.nodes[name] = temp

    def start_head(self, resources: dict[str, float]) -> None:
        self._start("head", ["--head", "--port", str(self.port), "--include-dashboard=false", "--dashboard-port", str(free_port()),
                             "--ray-client-server-port", str(free_port())], resources)

    def add_node(self, name: str, resources: dict[str, float]) -> None:
        self._start(name, ["--address", self.address], resources)

    def raylet_pid(self, name: str) -> int:
        mark = f"{self.nodes[name]}/"
        for pid in os.listdir("/proc"):
            cmd = _cmd(int(pid)) if pid.isdigit() else ""
            if cmd.split(" ", 1)[0].endswith("/raylet") and mark in cmd:
                return int(pid)
        raise RuntimeError(f"no raylet for node {name}")

    def busy_workers(self, name: str) -> list[int]:
        """Worker processes of node ``name`` running an evaluation task right now (Ray retitles them)."""
        raylet = self.raylet_pid(name)
        return [p for p in _children(raylet) if _cmd(p).startswith("ray::mstar_eval")]

    def kill_node(self, name: str) -> None:
        """The node dies as a machine would: its raylet SIGKILLed, its workers follow it."""
        os.kill(self.raylet_pid(name), signal.SIGKILL)

    def kill_workers(self) -> None:
        """Kill every node but the head that is still up (what an earlier test left), and give the cluster
        the time to notice (health checks every second, dead after 3 misses)."""
        killed = False
        for name in self.nodes:
            if name == "head":
                continue
            try:
                self.kill_node(name)
                killed = True
            except RuntimeError:  # already dead
                pass
        if killed:
            time.sleep(6)

    def close(self) -> None:
        from mstar.evolve.execution.ray_cleanup import reap

        for temp in reversed(list(self.nodes.values())):
            reap(temp, wait_s=15.0)
        shutil.rmtree(self.root, ignore_errors=True)


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(p))
    return out
