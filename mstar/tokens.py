"""The one token counter of the project.

A token is one match of the regular expression ``\\w+|[^\\w\\s]``: a run of word characters, or a
single punctuation character. It is model-agnostic, fast, deterministic and needs no download, so
budgets mean the same thing in every run and match the reference figures in the data README.
Real model tokenizers (BPE) count English text at roughly 1.0-1.3x this number.
"""

from __future__ import annotations

import functools
import re

TOKEN_PATTERN = r"\w+|[^\w\s]"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_WORD_RE = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """All tokens of ``text`` as they are counted for budgets."""
    return _TOKEN_RE.findall(text)


# Only record-sized texts are memoised: a whole context is counted once, and a junk harness returning
# megabyte strings must not pin them in memory.
_MEMO_MAX_CHARS = 4096


@functools.lru_cache(maxsize=1 << 16)
def _count(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` (see module docstring).

    Memoised: harnesses count the same stored records at every read while packing a context, and
    that counting was most of an evaluation's CPU time. A str caches its own hash, so a hit is cheap.
    """
    if type(text) is str and len(text) <= _MEMO_MAX_CHARS:
        return _count(text)
    return len(_TOKEN_RE.findall(str(text)))


def words(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped): the unit of text matching in scoring."""
    return _WORD_RE.findall(text.lower())
