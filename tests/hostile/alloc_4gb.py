"""Allocates (and touches) 4 GB in write()."""

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        self.hog = None

    def write(self, event):
        self.hog = bytearray(4 * 1024**3)

    def read(self, query):
        return {"context": "", "items": []}
