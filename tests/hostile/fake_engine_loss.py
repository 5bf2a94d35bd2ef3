"""Ends its own sandbox the ways an engine going away would (exit status 137 / 143, stdout closed, a
SIGKILL to itself) so that, were the host to judge by what the sandbox shows, its failure would be
paused and retried as the engine's instead of scored."""

import os
import signal

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test: {"how": "exit137" | "exit143" | "close_stdout" | "sigkill"}


class Memory:
    def __init__(self, toolkit, knobs):
        self.n = 0

    def write(self, event):
        self.n += 1
        how = PARAMS.get("how")
        if self.n < 3:
            return
        if how == "exit137":
            os._exit(137)
        if how == "exit143":
            os._exit(143)
        if how == "close_stdout":
            os.close(1)
            os.close(2)
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
            os.kill(1, signal.SIGKILL)

    def read(self, query):
        return {"context": "", "items": []}
