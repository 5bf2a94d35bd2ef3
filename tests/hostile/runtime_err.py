"""A harness with an ordinary bug: read() divides by zero (line 17). `mstar check` must show this file's
frame and the exception, not the runner's internals."""

INSTRUCTIONS = "Use the memory."
KNOBS = {}


class Memory:
    def __init__(self, toolkit, knobs):
        self.events = []

    def write(self, event):
        self.events.append(event)

    def read(self, query):
        hits = [e for e in self.events if "cat" in e["text"]]
        share = len(hits) / 0
        return {"context": str(share), "items": []}
