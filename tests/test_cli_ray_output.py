"""What Ray prints reaches the user only when it means something, and then in mstar's words.

A worker that mstar ends on purpose (after ``ray.cancel`` interrupted its task) made Ray's driver print
"(raylet) A worker died or was killed ... OOM killer ..." into `mstar evolve`'s terminal. Real Ray, a
local instance, real worker processes; no LLM involved.
"""

from __future__ import annotations

import json
import subprocess
import sys

from mstar.evolve.execution.ray_quiet import translate

SCRIPT = r'''
import json, os, time
from mstar.evolve.execution.ray_executor import start_ray, stop_ray, _retire_worker
started, temp = start_ray(1)
import ray

@ray.remote(num_cpus=0, max_retries=0)
def retired():
    _retire_worker()   # the path a cancelled task's worker takes

@ray.remote(num_cpus=0, max_retries=0)
def crash():
    os._exit(3)

for fn in (retired, crash):
    try:
        ray.get(fn.remote())
    except Exception:
        pass
    time.sleep(3)  # the driver's listener prints a death a moment later
stop_ray(temp)
print(json.dumps({"ok": True}))
'''


def test_a_retired_worker_is_silent_and_an_unexpected_death_is_one_mstar_line():
    """Real Ray: one worker retires through ``_retire_worker``, another dies unexpectedly."""
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == {"ok": True}
    both = r.stdout + r.stderr
    assert "(raylet)" not in both and "OOM" not in both, both[-3000:]
    deaths = [ln for ln in r.stderr.splitlines() if ln.startswith("mstar: a Ray worker died")]
    assert len(deaths) == 1, r.stderr[-3000:]


def test_translate_rules(tmp_path):
    """The filter's rules on Ray's own wording (as Ray 2.60 publishes it)."""
    msg = ("A worker died or was killed while executing a task by an unexpected system error. To troubleshoot "
           "the problem, check the logs for the dead worker. Worker PID: {pid} Worker exit type: SYSTEM_ERROR "
           "... (1) The process is killed by SIGKILL by OOM killer due to high memory usage.")
    (tmp_path / "mstar-retired").mkdir()
    (tmp_path / "mstar-retired" / "4242").touch()
    assert translate(msg.format(pid=4242), tmp_path) is None
    line = translate(msg.format(pid=77), tmp_path)
    assert line.startswith("mstar: a Ray worker died (pid 77)") and "OOM" not in line
    assert translate("something else", tmp_path) == "mstar: Ray reports: something else"
    assert translate("   ", tmp_path) is None

