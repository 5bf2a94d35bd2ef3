"""Burns CPU in a process tree: forks PARAMS children that spin for PARAMS seconds, waits for them and
reports the CPU seconds they used (a per-process rlimit does not bound the sum; a cgroup quota does)."""
import os
import time

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        self.knobs = PARAMS

    def write(self, event):
        pass

    def read(self, query):
        kids = []
        for _ in range(self.knobs["children"]):
            pid = os.fork()
            if pid == 0:
                end = time.monotonic() + self.knobs["seconds"]
                while time.monotonic() < end:
                    pass
                os._exit(0)
            kids.append(pid)
        for pid in kids:
            os.waitpid(pid, 0)
        t = os.times()
        return {"context": f"{t.children_user + t.children_system:.3f}", "items": []}
