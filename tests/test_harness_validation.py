"""Harness loading and validation: every error names the file, the line where it can, and what is wrong."""

import textwrap

import pytest

from mstar.errors import HarnessError
from mstar.harness.loader import load_program, seed_names
from mstar.harness.smoke import smoke_test
from mstar.sandbox.inline import InlineBackend

INLINE = InlineBackend()  # trusted test programs (our seeds / hand-written cases): no sandbox needed

GOOD = textwrap.dedent('''
    """A tiny valid harness."""
    INSTRUCTIONS = "Use the memory."
    KNOBS = {"n": {"type": "int", "low": 1, "high": 10, "default": 3}}

    class Memory:
        def __init__(self, toolkit, knobs):
            self.events, self.n = [], knobs["n"]

        def write(self, event):
            self.events.append(event)

        def read(self, query):
            items = [{"text": e["text"], "sources": [e["id"]]} for e in self.events[-self.n:]]
            return {"context": "\\n".join(i["text"] for i in items), "items": items}
''')


def write(tmp_path, body, name="h.py"):
    p = tmp_path / name
    p.write_text(body)
    return p


def test_good_harness_loads_and_smokes(tmp_path):
    prog = load_program(write(tmp_path, GOOD))
    assert prog.name == "h" and "n" in prog.knob_specs and not prog.needs_llm
    smoke_test(prog, INLINE)


@pytest.mark.parametrize(
    "mutate, message, line",
    [
        (lambda s: s.replace('INSTRUCTIONS = "Use the memory."', ""), "missing INSTRUCTIONS", None),
        (lambda s: s.replace('INSTRUCTIONS = "Use the memory."', "INSTRUCTIONS = 3"), "INSTRUCTIONS must be a str", 3),
        (lambda s: s.replace("KNOBS = {", "KNOBZ = {"), "missing KNOBS", None),
        (lambda s: s.replace('"default": 3', '"default": 30'), "KNOBS[n]", 4),
        (lambda s: s.replace("class Memory:", "class Mem:"), "missing class Memory", None),
        (lambda s: s.replace("def read(self, query):", "def reed(self, query):"), "lacks method read()", 6),
        (lambda s: "import requests\n" + s, "import of 'requests' is not allowed", 1),
        (lambda s: "import mstar.toolkit\n" + s, "must not import mstar", 1),
        (lambda s: "import socket\n" + s, "'socket' is not allowed", 1),
        (lambda s: "from ctypes import CDLL\n" + s, "'ctypes' is not allowed", 1),
        (lambda s: s.replace("self.events.append(event)", "import os; os.system('id')"), "os.system is not allowed", 11),
        (lambda s: s.replace("self.events.append(event)", "eval('1')"), "eval() is not allowed", 11),
        (lambda s: s + "\ndef broken(:\n", "syntax error", 17),
    ],
)
def test_static_errors_name_file_line_and_problem(tmp_path, mutate, message, line):
    p = write(tmp_path, mutate(GOOD))
    with pytest.raises(HarnessError) as e:
        load_program(p)
    assert message in str(e.value)
    assert str(p) in str(e.value)
    if line is not None:
        assert e.value.line == line, str(e.value)


def test_smoke_catches_a_read_that_breaks_the_contract(tmp_path):
    bad = GOOD.replace('return {"context": "\\n".join(i["text"] for i in items), "items": items}', 'return ["not", "a", "dict"]')
    with pytest.raises(HarnessError, match="smoke: bad_output: read\\(\\) must return a dict"):
        smoke_test(load_program(write(tmp_path, bad)), INLINE)


def test_smoke_catches_a_crash_with_the_harness_traceback(tmp_path):
    bad = GOOD.replace("self.events.append(event)", "raise KeyError('boom')")
    with pytest.raises(HarnessError) as e:
        smoke_test(load_program(write(tmp_path, bad)), INLINE)
    assert "smoke: crash" in str(e.value) and "KeyError" in str(e.value) and "h.py" in str(e.value)


def test_seed_names_and_unknown_seed():
    names = seed_names()
    assert {"bm25", "bm25_neighbors", "full_context", "recency"} <= set(names)
    with pytest.raises(HarnessError, match="unknown harness.*seeds: .*bm25"):
        load_program("no_such_seed")
    with pytest.raises(HarnessError, match="no such harness file"):
        load_program("/tmp/definitely/not/here.py")


@pytest.mark.parametrize("name", ["bm25", "bm25_neighbors", "full_context", "recency"])
def test_first_seeds_pass_validation(name):
    prog = load_program(name)
    assert prog.docstring and "Needs an LLM" in prog.docstring
    smoke_test(prog, INLINE)
