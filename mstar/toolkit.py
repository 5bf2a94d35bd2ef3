"""The toolkit the host injects into every harness.

A harness never builds its own model clients: it calls ``toolkit.llm``, ``toolkit.embed``,
``toolkit.count_tokens`` and ``toolkit.log``. Offline, ``llm`` raises ``LLMUnavailable`` and ``has_llm``
is False. A model call that fails for good (server down, prompt over the model's context window, a
budget refusal ...) raises ``LLMError``. Both are exposed on the toolkit (``toolkit.LLMUnavailable``,
``toolkit.LLMError``) so a harness can catch them without importing mstar; the in-sandbox toolkit
(``sandbox/runner.py``) raises the same two.

The evaluator scopes the run's toolkit to one episode of one candidate (``scoped``): the candidate's
harness calls are attributed to it (its share of the run's LLM budget, see ``mstar.llm_limits``), its
embedding use is counted against the per-episode caps, and a quota it exhausts fails it for good
(``failure``), even if its code catches the error. The answer step and the judges reach the broker
under their own purposes through ``scorer``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from mstar.errors import BudgetExceeded, CandidateFailure, LLMError, LLMUnavailable
from mstar.tokens import count_tokens as _count_tokens

LLMFn = Callable[..., str]
EmbedFn = Callable[[Sequence[str]], list[list[float]]]
Route = Callable[[str, str], LLMFn]  # (purpose, candidate) -> llm function


class Toolkit:
    LLMUnavailable = LLMUnavailable
    LLMError = LLMError

    def __init__(
        self,
        llm: LLMFn | None = None,
        embed: EmbedFn | None = None,
        log: Callable[[str], None] | None = None,
        embedder_name: str = "hashing",
        route: Route | None = None,
        limits: Any = None,
    ):
        self._llm = llm
        if embed is None:
            from mstar.embedders import HashingEmbedder

            embed = HashingEmbedder()
        self._embed = embed
        self._log = log
        self._route = route
        if limits is None:
            from mstar.llm_limits import LLMLimits

            limits = LLMLimits()
        self.limits = limits
        self.embedder_name = embedder_name
        self.logs: list[str] = []
        self.candidate = ""
        self.failure: CandidateFailure | None = None  # a quota this candidate exhausted (sticky)
        self.budget_hit: BudgetExceeded | None = None  # the run's budget ran out during this episode (sticky)
        self._embed_calls = 0
        self._embed_chars = 0
        self._quota = False

    @property
    def has_llm(self) -> bool:
        return self._llm is not None

    def scoped(self, candidate: str) -> Toolkit:
        """This toolkit for one episode of ``candidate`` (a program id): see the module docstring."""
        llm = self._route("harness", candidate) if (self._route is not None and self._llm is not None) else self._llm
        tk = Toolkit(llm=llm, embed=self._embed, log=self._log, embedder_name=self.embedder_name,
                     route=self._route, limits=self.limits)
        tk.candidate = candidate
        tk._quota = True
        return tk

    def scorer(self, purpose: str) -> LLMFn:
        """The model for the host's own scoring (``answer``, ``judge``): capped and recorded as such."""
        if self._llm is None:
            raise LLMUnavailable("this run has no model: pass --model to enable LLM calls")
        return self._route(purpose, "") if self._route is not None else self._llm

    def llm(self, messages: list[dict[str, Any]] | str, **kw: Any) -> str:
        if self.failure is not None:
            raise CandidateFailure(self.failure.reason, self.failure.detail)
        if self._llm is None:
            raise LLMUnavailable("this run has no model: pass --model to enable LLM calls")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if self.budget_hit is not None:
            raise BudgetExceeded(str(self.budget_hit))
        try:
            return self._llm(messages, **kw)
        except CandidateFailure as e:
            self.failure = e
            raise
        except BudgetExceeded as e:
            self.budget_hit = e
            raise

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.failure is not None:
            raise CandidateFailure(self.failure.reason, self.failure.detail)
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if self._quota:
            self._embed_calls += 1
            self._embed_chars += sum(len(str(t)) for t in texts)
            if self._embed_calls > self.limits.embed_calls_per_episode:
                self.failure = CandidateFailure("embed_quota", f"more than {self.limits.embed_calls_per_episode:,} "
                                                "embed calls in one episode")
            elif self._embed_chars > self.limits.embed_chars_per_episode:
                self.failure = CandidateFailure("embed_quota", f"more than {self.limits.embed_chars_per_episode:,} "
                                                "characters embedded in one episode")
            if self.failure is not None:
                raise CandidateFailure(self.failure.reason, self.failure.detail)
        return self._embed(texts)

    def count_tokens(self, text: str) -> int:
        return _count_tokens(text)

    def log(self, msg: str) -> None:
        msg = str(msg)[:2000]
        # Bounded so a chatty harness cannot grow host memory without limit.
        if len(self.logs) < 1000:
            self.logs.append(msg)
        if self._log is not None:
            self._log(msg)
        else:
            print(f"[harness] {msg}", file=sys.stderr)
