"""Leaves a busy child behind: fork, ``setsid`` (a new session and process group, out of reach of a
killpg of the runner's group), spin forever. A sandbox that only kills its process group leaks it."""
import os

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        pass

    def write(self, event):
        pass

    def read(self, query):
        if os.fork() == 0:
            os.setsid()
            while True:
                pass
        return {"context": "left a child behind", "items": []}
