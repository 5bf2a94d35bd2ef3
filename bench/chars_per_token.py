"""Characters per budget token in real conversation text: the basis of the context's character cap.

Prints, for LoCoMo and LongMemEval_S turns: the overall ratio, the 99th percentile per turn, and the most
character-dense run of consecutive turns holding 256-1,024 tokens (what a budget-1,024 context can be).

    python bench/chars_per_token.py --locomo ../shared/data/locomo10.json --lme ../shared/data/longmemeval_s_dev.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import deque
from pathlib import Path


def _load(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def stats(name: str, texts: list[str]) -> None:
    from mstar.tokens import count_tokens

    toks = [max(1, count_tokens(t)) for t in texts]
    ratios = sorted(len(t) / k for t, k in zip(texts, toks, strict=True))
    window: deque[tuple[int, int]] = deque()
    chars = tokens = 0
    worst = 0.0
    for t, k in zip(texts, toks, strict=True):
        window.append((len(t) + 1, k))
        chars, tokens = chars + len(t) + 1, tokens + k
        while tokens > 1024 and len(window) > 1:
            c0, k0 = window.popleft()
            chars, tokens = chars - c0, tokens - k0
        if tokens >= 256:
            worst = max(worst, chars / tokens)
    print(f"{name}: {len(texts)} turns, {sum(map(len, texts)) / sum(toks):.2f} chars/token overall, "
          f"p99 per turn {ratios[int(0.99 * len(ratios))]:.2f}, densest ~1k-token run {worst:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--locomo", type=Path, required=True)
    ap.add_argument("--lme", type=Path, required=True)
    args = ap.parse_args(argv)
    texts = []
    for conv in _load(args.locomo):
        for key, turns in conv["conversation"].items():
            if key.startswith("session_") and isinstance(turns, list):
                for t in turns:
                    cap = f" [image: {t['blip_caption']}]" if t.get("blip_caption") else ""
                    texts.append(f"{t.get('speaker', '')}: {t.get('text', '')}{cap}")
    stats("LoCoMo", texts)
    stats("LongMemEval_S", [t["content"] for q in _load(args.lme) for s in q["haystack_sessions"] for t in s])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
