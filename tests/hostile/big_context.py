"""Returns a 10 MB context."""

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        pass

    def write(self, event):
        pass

    def read(self, query):
        return {"context": "word " * 2_000_000, "items": []}
