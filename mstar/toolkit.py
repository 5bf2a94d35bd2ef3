"""The toolkit the host injects into every harness (DESIGN §3).

A harness never builds its own model clients: it calls ``toolkit.llm``, ``toolkit.embed``,
``toolkit.count_tokens`` and ``toolkit.log``. Offline, ``llm`` raises ``LLMUnavailable`` (exposed as
``toolkit.LLMUnavailable`` so a harness can catch it without importing mstar) and ``has_llm`` is False.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from mstar.errors import LLMUnavailable
from mstar.tokens import count_tokens as _count_tokens

LLMFn = Callable[..., str]
EmbedFn = Callable[[Sequence[str]], list[list[float]]]


class Toolkit:
    LLMUnavailable = LLMUnavailable

    def __init__(
        self,
        llm: LLMFn | None = None,
        embed: EmbedFn | None = None,
        log: Callable[[str], None] | None = None,
        embedder_name: str = "hashing",
    ):
        self._llm = llm
        if embed is None:
            from mstar.embedders import HashingEmbedder

            embed = HashingEmbedder()
        self._embed = embed
        self._log = log
        self.embedder_name = embedder_name
        self.logs: list[str] = []

    @property
    def has_llm(self) -> bool:
        return self._llm is not None

    def llm(self, messages: list[dict[str, Any]] | str, **kw: Any) -> str:
        if self._llm is None:
            raise LLMUnavailable("this run has no model: pass --model to enable LLM calls")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return self._llm(messages, **kw)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if isinstance(texts, str):
            texts = [texts]
        return self._embed(list(texts))

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
