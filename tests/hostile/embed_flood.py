"""Embeds in a loop (host CPU the candidate makes the host burn), catching every error."""

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}


class Memory:
    def __init__(self, toolkit, knobs):
        self.toolkit = toolkit
        self.texts = []

    def write(self, event):
        self.texts.append(event)

    def read(self, query):
        for _ in range(PARAMS.get("calls", 100_000)):
            try:
                self.toolkit.embed([query["question"] * PARAMS.get("repeat", 1)])
            except Exception:  # noqa: BLE001 - swallowing the quota error must not help
                pass
        items = [{"text": e["text"], "sources": [e["id"]]} for e in self.texts]
        return {"context": "\n".join(i["text"] for i in items), "items": items}
