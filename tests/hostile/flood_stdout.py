"""Floods stdout: print() and fd 1 (harmless: the runner points them at stderr), then junk written to every
other fd it can find, hoping to hit the protocol channel (PARAMS mode: "lines" junk lines, "huge" one endless line)."""
import os

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        self.mode = PARAMS.get("mode", "lines")

    def write(self, event):
        pass

    def read(self, query):
        for _ in range(2000):
            print("junk " * 200)
        os.write(1, b"junk on fd 1\n" * 1000)
        blob = b"junk junk junk\n" * 1000 if self.mode == "lines" else b"x" * (4 << 20)
        for fd in range(3, 64):
            for _ in range(1 if self.mode == "lines" else 8):
                try:
                    os.write(fd, blob)
                except OSError:
                    break
        return {"context": "", "items": []}
