"""Every sandbox runner starts with one fixed string-hash seed (mstar.sandbox.base.HASH_SEED), so a
harness whose output follows set order gives the same output in every session, run and process --
which the same ``--seed`` growing the same lineage rests on, for any candidate and not only the seeds.

The harness below returns its words in the order of a Python ``set``; the host shows that order changes
with the hash seed (so the sandbox check below could fail), then fresh runners of the ``process`` and
``docker`` backends (no reuse: a new interpreter per session) all return one order."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_sandbox_support import LABELS, LIMITS, assert_nothing_left, make_backend, program

from mstar.toolkit import Toolkit

WORDS = ("marathon cello bicycle porto lisbon miso plant sister grey cat learning started trains bought red "
         "knocked adopted called lives").split()
SET_ORDER_SRC = """
INSTRUCTIONS = "Use the words."
KNOBS = {}


class Memory:
    def __init__(self, toolkit, knobs):
        self.words = set()

    def write(self, event):
        self.words.update(event["text"].split())

    def read(self, query):
        return {"context": " ".join(self.words), "items": []}
"""
QUERY = {"id": "q", "question": "anything", "time": None, "budget": 200}


def _host_order(hash_seed: str) -> str:
    code = f"print(' '.join(set({WORDS!r})))"
    return subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": hash_seed}, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_set_order_follows_the_hash_seed_on_the_host():
    assert len({_host_order(s) for s in ("1", "2", "3")}) > 1


@pytest.mark.parametrize("backend_name", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_every_fresh_runner_iterates_a_set_in_the_same_order(backend_name):
    backend = make_backend(backend_name, warm=False)
    prog = program("set_order", source=SET_ORDER_SRC)
    outputs = []
    try:
        for _ in range(3):
            s = backend.open(prog, {}, Toolkit(), LIMITS, LABELS)
            try:
                s.write([{"id": f"e{i}", "text": w, "session": "1", "speaker": "a"} for i, w in enumerate(WORDS)])
                outputs.append(s.read(QUERY)[0]["context"])
            finally:
                s.close()
    finally:
        assert_nothing_left(backend)
    assert sorted(outputs[0].split()) == sorted(WORDS)
    assert len(set(outputs)) == 1, outputs
    assert outputs[0] == _host_order("0")  # the documented seed, not merely a constant one
