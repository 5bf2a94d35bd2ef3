"""Host-side embedders behind ``toolkit.embed``.

The default, ``HashingEmbedder``, is a deterministic *lexical* stand-in (feature hashing of word
unigrams and bigrams, L2-normalised): it needs no download and no model, and it is not a semantic
model. Real embedders (a local sentence-transformers model, or a litellm embedding model) plug in
with the same call signature.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from mstar.tokens import words


class HashingEmbedder:
    name = "hashing"

    def __init__(self, dim: int = 256):
        self.dim = dim

    def _bucket(self, feature: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
        return h % self.dim, (1.0 if (h >> 63) & 1 else -1.0)

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = [0.0] * self.dim
            ws = words(text)
            feats = ws + [a + " " + b for a, b in zip(ws, ws[1:], strict=False)]
            for f in feats:
                i, s = self._bucket(f)
                vec[i] += s
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            out.append([v / norm for v in vec])
        return out
