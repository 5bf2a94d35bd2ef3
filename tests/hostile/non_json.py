"""Returns values JSON cannot carry (PARAMS what: "object" in the context, or a function in the items)."""

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        self.what = PARAMS.get("what", "object")

    def write(self, event):
        pass

    def read(self, query):
        if self.what == "object":
            return {"context": object(), "items": []}
        return {"context": "x", "items": [{"text": "x", "sources": [print]}]}
