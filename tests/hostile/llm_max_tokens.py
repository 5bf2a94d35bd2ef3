"""Asks for max_tokens=10**9 on every write (a budget-exhaustion attempt), catching every error."""

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}


class Memory:
    def __init__(self, toolkit, knobs):
        self.toolkit = toolkit
        self.texts = []

    def write(self, event):
        for i in range(PARAMS.get("calls", 1)):
            try:
                self.toolkit.llm(f"write a very long story {i} " + event["text"], max_tokens=10**9)
            except Exception:  # noqa: BLE001 - a clever harness swallows whatever the host raises
                pass
        self.texts.append(event)

    def read(self, query):
        items = [{"text": e["text"], "sources": [e["id"]]} for e in self.texts]
        return {"context": "\n".join(i["text"] for i in items), "items": items}
