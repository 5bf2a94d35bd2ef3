"""Prints a lot (to what it thinks is stdout) but otherwise behaves: must score normally."""
import sys

INSTRUCTIONS = "Use the turns."
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        self.events = []
        print("hello from __init__")

    def write(self, event):
        print("writing", event["id"], "x" * 500)
        sys.stdout.write("more noise\n")
        self.events.append(event)

    def read(self, query):
        print("reading", query["question"])
        items = [{"text": e["text"], "sources": [e["id"]]} for e in self.events[-5:]]
        return {"context": "\n".join(i["text"] for i in items), "items": items}
