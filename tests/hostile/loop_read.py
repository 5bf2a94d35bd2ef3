"""An infinite loop in read()."""

INSTRUCTIONS = "hostile"
KNOBS = {}
PARAMS = {}  # set by the test


class Memory:
    def __init__(self, toolkit, knobs):
        pass

    def write(self, event):
        pass

    def read(self, query):
        n = 0
        while True:
            n += 1
