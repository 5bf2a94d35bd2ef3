"""Pieces several commands share: parsing KEY=VALUE options, building the toolkit, rich output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from mstar.errors import UsageError


def parse_pairs(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``["top_k=5", "mode=dense"]`` -> ``{"top_k": 5, "mode": "dense"}``; values parsed as JSON when they can be."""
    out: dict[str, Any] = {}
    for p in pairs or []:
        key, sep, val = p.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag}: expected KEY=VALUE, got {p!r}")
        try:
            out[key.strip()] = json.loads(val)
        except json.JSONDecodeError:
            out[key.strip()] = val
    return out


def build_toolkit(model: str | None = None, api_base: str | None = None, embed_model: str | None = None,
                  run_id: str = ""):
    """The host toolkit: offline unless a model is given (then LLM calls go through the broker, their
    ledger rows under ``run_id``, with the same caps and call timeout as ``mstar evolve``)."""
    from mstar.embedders import default_embedder
    from mstar.toolkit import Toolkit

    if model or embed_model:
        # LLM and litellm embedding calls go through the broker: cache, retries, cost ledger.
        from mstar.broker import Broker

        # A persistent cache: evaluating the same harness again with the same model costs nothing.
        cache = Path(os.environ.get("MSTAR_CACHE_DIR", ".mstar")) / "llm-cache.db"
        cache.parent.mkdir(parents=True, exist_ok=True)
        return Broker(model, api_base=api_base, embed_model=embed_model, cache_path=cache, run_id=run_id,
                      embedder=None if embed_model else default_embedder()).toolkit()
    embedder = default_embedder()
    return Toolkit(embed=embedder, embedder_name=embedder.name)


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def json_stdout() -> Any:
    """Keep stdout for the JSON document alone. From here on, whatever else prints to ``sys.stdout``
    goes to stderr -- Ray's driver prints worker deaths there whatever ``log_to_driver`` says (a
    cancelled task's worker exits on purpose), litellm its provider hints. Returns the stream to
    write the document to. Not restored: Ray's listener thread may still print while Python exits."""
    real = sys.stdout
    sys.stdout = sys.stderr
    return real
