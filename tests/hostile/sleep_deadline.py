"""Sleeps in read() (PARAMS sleep, seconds) and in every write (PARAMS write_sleep)."""
import time

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        self.knobs = PARAMS

    def write(self, event):
        time.sleep(self.knobs.get("write_sleep", 0))

    def read(self, query):
        time.sleep(self.knobs.get("sleep", 3600))
        return {"context": "", "items": []}
