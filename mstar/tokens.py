"""The one token counter of the project.

A token is one match of the regular expression ``\\w+|[^\\w\\s]``: a run of word characters, or a
single punctuation character. It is model-agnostic, fast, deterministic and needs no download, so
budgets mean the same thing in every run and match the reference figures in the data README.
Real model tokenizers (BPE) count English text at roughly 1.0-1.3x this number.
"""

from __future__ import annotations

import re

TOKEN_PATTERN = r"\w+|[^\w\s]"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_WORD_RE = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """All tokens of ``text`` as they are counted for budgets."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` (see module docstring)."""
    return sum(1 for _ in _TOKEN_RE.finditer(text))


def words(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped): the unit of text matching in scoring."""
    return _WORD_RE.findall(text.lower())
