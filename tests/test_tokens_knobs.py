"""The token counter and KNOBS parsing."""

import pytest

from mstar.harness.knobs import KnobsError, parse_knobs, resolve
from mstar.tokens import count_tokens, tokenize


def test_token_counter_is_the_documented_regex():
    assert tokenize("Caroline: I went, yesterday!") == ["Caroline", ":", "I", "went", ",", "yesterday", "!"]
    assert count_tokens("") == 0
    assert count_tokens("don't") == 3  # don ' t
    assert count_tokens("2023-05-08") == 5


def test_knobs_parse_and_resolve():
    specs = parse_knobs({
        "top_k": {"type": "int", "low": 1, "high": 50, "default": 10},
        "alpha": {"type": "float", "low": 0.01, "high": 1.0, "default": 0.5, "log": True},
        "mode": {"type": "cat", "choices": ["bm25", "dense"], "default": "bm25"},
        "dates": {"type": "bool", "default": True},
    })
    assert resolve(specs) == {"top_k": 10, "alpha": 0.5, "mode": "bm25", "dates": True}
    assert resolve(specs, {"top_k": 3, "mode": "dense"})["top_k"] == 3


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"k": {"type": "int", "low": 1, "high": 3, "default": 9}}, "KNOBS[k]"),
        ({"k": {"type": "int", "low": 1, "high": 3}}, "default"),
        ({"k": {"type": "cat", "choices": ["a"], "default": "b"}}, "not one of"),
        ({"k": {"type": "weird", "default": 1}}, "KNOBS[k]"),
        ({"k": {"type": "float", "low": 0, "high": 1, "default": 0.5, "log": True}}, "log scale"),
        ({"k": {"type": "bool", "default": True, "extra": 1}}, "extra"),
        ({"not an id": {"type": "bool", "default": True}}, "identifier"),
        ([1, 2], "must be a dict"),
    ],
)
def test_bad_knobs_name_the_knob(raw, fragment):
    with pytest.raises(KnobsError) as e:
        parse_knobs(raw)
    assert fragment in str(e.value)


def test_resolve_rejects_unknown_and_out_of_range():
    specs = parse_knobs({"top_k": {"type": "int", "low": 1, "high": 5, "default": 2}})
    with pytest.raises(KnobsError, match="unknown knob 'x'"):
        resolve(specs, {"x": 1})
    with pytest.raises(KnobsError, match="outside"):
        resolve(specs, {"top_k": 9})
    with pytest.raises(KnobsError, match="integer"):
        resolve(specs, {"top_k": 2.5})
