"""The edit-block parser and applier of the LLM operators (mstar/evolve/operators/patch.py)."""

from __future__ import annotations

import pytest

from mstar.evolve.operators.patch import PatchError, apply_reply, parse_reply

SRC = '''INSTRUCTIONS = "use memory"

KNOBS = {"top_k": {"type": "int", "low": 1, "high": 50, "default": 10}}


def score(x):
    return x * 2


class Memory:
    def __init__(self, toolkit, knobs):
        self.items = []

    def write(self, event):
        self.items.append(event)

    def read(self, query):
        return {"context": "", "items": []}
'''


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_multiple_blocks_apply_in_order_and_rationale_is_read():
    reply = ("RATIONALE: double the default and triple the score\n\n"
             + block('"default": 10', '"default": 20')
             + "some chatter between blocks\n"
             + block("    return x * 2", "    return x * 3"))
    child, parsed = apply_reply(SRC, reply)
    assert parsed.rationale == "double the default and triple the score"
    assert len(parsed.edits) == 2 and parsed.rewrite is None
    assert '"default": 20' in child and "return x * 3" in child
    assert child.replace('"default": 20', '"default": 10').replace("x * 3", "x * 2") == SRC


def test_later_block_sees_the_result_of_an_earlier_one():
    reply = block("    return x * 2", "    return x * 5") + block("    return x * 5", "    return x + 5")
    child, _ = apply_reply(SRC, reply)
    assert "return x + 5" in child and "x * 5" not in child


def test_trailing_whitespace_and_indentation_drift_are_tolerated():
    # trailing spaces on the SEARCH lines
    child, _ = apply_reply(SRC, block("def score(x):   \n    return x * 2  ", "def score(x):\n    return -x"))
    assert "    return -x\n" in child and "x * 2" not in child
    # the model lost the method's indentation: matched ignoring indentation, replacement re-indented
    child, _ = apply_reply(SRC, block("def write(self, event):\n    self.items.append(event)",
                                      "def write(self, event):\n    self.items.insert(0, event)"))
    assert "    def write(self, event):\n        self.items.insert(0, event)\n" in child


def test_blocks_wrapped_in_code_fences_are_parsed_as_edits_not_a_rewrite():
    reply = "RATIONALE: x\n```python\n" + block("    return x * 2", "    return x * 4") + "```\n"
    child, parsed = apply_reply(SRC, reply)
    assert parsed.rewrite is None and len(parsed.edits) == 1
    assert "return x * 4" in child and "```" not in child


def test_search_that_matches_nothing_names_the_block_and_the_closest_line():
    reply = block('"default": 10', '"default": 11') + block("    return x * 7", "    return 0")
    with pytest.raises(PatchError) as e:
        apply_reply(SRC, reply)
    assert e.value.reason == "patch_no_match"
    assert "block 2" in e.value.detail and "return x * 2" in e.value.detail  # the hint


def test_ambiguous_search_is_refused():
    src = SRC + "\n\ndef other(x):\n    return x * 2\n"
    with pytest.raises(PatchError) as e:
        apply_reply(src, block("    return x * 2", "    return 1"))
    assert e.value.reason == "patch_ambiguous" and "2 times" in e.value.detail


def test_full_rewrite_in_a_python_fence_is_the_fallback():
    new = SRC.replace("use memory", "use memory well")
    reply = f"RATIONALE: clearer instructions\nHere it is:\n```python\n{new}```\nThat is all."
    child, parsed = apply_reply(SRC, reply)
    assert parsed.rewrite is not None and parsed.edits == []
    assert child == new


def test_malformed_replies_are_errors_with_a_reason():
    with pytest.raises(PatchError) as e:
        parse_reply("I think you should use BM25.")
    assert e.value.reason == "patch_empty"
    with pytest.raises(PatchError) as e:  # no closing marker
        parse_reply("<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n")
    assert e.value.reason == "patch_malformed" and "not closed" in e.value.detail
    with pytest.raises(PatchError) as e:  # divider missing
        parse_reply("<<<<<<< SEARCH\nx = 1\n>>>>>>> REPLACE\n")
    assert e.value.reason == "patch_malformed"
    with pytest.raises(PatchError) as e:  # empty SEARCH
        apply_reply(SRC, block("", "x = 1"))
    assert e.value.reason == "patch_malformed" and "empty" in e.value.detail


def test_a_block_can_delete_lines():
    child, _ = apply_reply(SRC, block("def score(x):\n    return x * 2\n", ""))
    assert child == SRC.replace("def score(x):\n    return x * 2\n", "")
