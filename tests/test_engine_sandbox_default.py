"""A Python caller who builds an ``EvolveConfig`` without naming a sandbox gets the CLI's protection
(``auto``: docker, else the fully isolated process sandbox), never candidate code in its own process."""

from __future__ import annotations

import pytest
from evolve_helpers import JitterOperator, TinyTask
from pydantic import ValidationError
from test_sandbox_support import docker_skip_reason, ensure_image

from mstar.evolve.core.config import EvolveConfig, StopConfig
from mstar.evolve.core.engine import Engine


def test_a_config_without_a_sandbox_evaluates_and_breeds_in_docker(tmp_path):
    reason = docker_skip_reason()
    if reason:
        pytest.skip(reason)
    ensure_image()
    cfg = EvolveConfig(run_id="iso", task="tiny", budget=20, seeds=["bm25"], operators={"jitter": 1.0},
                       children_per_gen=1, islands=1, island_size=2, final_k=1, stops=StopConfig(generations=1))
    assert cfg.sandbox == "auto"
    engine = Engine(cfg, tmp_path / "iso", operators={"jitter": JitterOperator()}, suite=TinyTask())
    summary = engine.run()
    assert summary["seeds"]["bm25"]["train"] is not None  # the seed was scored, in the sandbox below
    assert type(engine._executor.backend).__name__ == "DockerBackend"
    assert type(engine.breeder.sandbox).__name__ == "DockerBackend"


def test_an_unknown_sandbox_name_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match="sandbox"):
        EvolveConfig(run_id="r", task="tiny", sandbox="none")
