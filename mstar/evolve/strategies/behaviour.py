"""Behaviour keys: when a screened child is the same point of the search as a program already tried.

A child whose key equals an earlier program's is rejected as a neutral variant (``rejected-novelty``):
letting such children in fills islands with clones of one program and stalls the search. The code-level
near-duplicate filter (``novelty``) runs before any evaluation in every case; the key is the second,
behavioural look, on the screen episodes.

- ``aggregate`` (the default): the same mean score, the same mean context size and the same number of
  errors over the screen.
- ``signature``: the same value on every screen probe. Programs that fail the same probes are the same
  whatever their code or context size; two programs with the same mean but different probes solved
  are different (one may be a specialist worth keeping).
- ``code``: no behavioural look at all: only the code filter says two programs are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

from mstar.evolve.store.scores import ScoreBook


class AggregateBehaviour:
    name = "aggregate"

    def __init__(self, book: ScoreBook, screen_ids: list[str]):
        self.book = book
        self.screen_ids = screen_ids

    def key(self, pid: str) -> Hashable | None:
        st = self.book.stats(pid, "train", self.screen_ids)
        assert st is not None
        return (round(st.quality, 9), round(st.tokens, 6), st.errors)

    def describe(self, pid: str) -> str:
        st = self.book.stats(pid, "train", self.screen_ids)
        assert st is not None
        return f"{self.book.metric} {st.quality:.4f}, {st.tokens:.1f} context tokens"


class SignatureBehaviour:
    name = "signature"

    def __init__(self, book: ScoreBook, screen_ids: list[str]):
        self.book = book
        self.screen_ids = screen_ids

    def key(self, pid: str) -> Hashable | None:
        values = self.book.probe_values(pid, "train", self.screen_ids)
        return tuple(sorted((k, round(v, 6)) for k, v in values.items()))

    def describe(self, pid: str) -> str:
        values = self.book.probe_values(pid, "train", self.screen_ids)
        missed = sum(1 for v in values.values() if v < 1.0)
        return f"the same {self.book.metric} on each of {len(values)} probes, {missed} of them below 1"


class CodeBehaviour:
    name = "code"

    def __init__(self, book: ScoreBook, screen_ids: list[str]):
        pass

    def key(self, pid: str) -> Hashable | None:
        return None

    def describe(self, pid: str) -> str:
        return ""


BEHAVIOUR_KEYS: Mapping[str, Callable[[ScoreBook, list[str]], AggregateBehaviour | SignatureBehaviour | CodeBehaviour]] = {
    "aggregate": AggregateBehaviour, "signature": SignatureBehaviour, "code": CodeBehaviour}
