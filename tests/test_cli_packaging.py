"""Install noise: building the package warns about nothing, and a sandbox image build leaves no
dangling `<none>` image behind (real Docker, the classic builder that `mstar sandbox build` drives)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_builds_without_warnings_and_ships_the_prompts(tmp_path):
    # A copy of the sources: setuptools builds in the source tree (build/, egg-info), not in the checkout.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("mstar", "harnesses", "tasks", "sandbox"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Warning" not in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    (wheel,) = tmp_path.glob("mstar-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    prompts = sorted(n for n in names if n.startswith("mstar/evolve/operators/prompts/"))
    assert prompts and all(n.endswith(".md") for n in prompts)
    assert {p.name for p in (ROOT / "mstar/evolve/operators/prompts").glob("*.md")} == {Path(n).name for n in prompts}


DOCKERFILE = """ARG BASE
FROM ${BASE} AS build
RUN mkdir /made && echo {marker} > /made/x
FROM ${BASE}
COPY --from=build /made /made
"""


@pytest.mark.docker
def test_a_multi_stage_build_leaves_no_dangling_image(tmp_path):
    from test_sandbox_support import docker_skip_reason

    why = docker_skip_reason()
    if why:
        pytest.skip(why)
    import docker

    from mstar.sandbox.docker_backend import docker_client
    from mstar.sandbox.image import LOCAL_BASE, docker_build

    client = docker_client()
    try:
        try:
            client.images.get(LOCAL_BASE)
        except docker.errors.ImageNotFound:
            pytest.skip(f"no Docker base image {LOCAL_BASE} (mstar sandbox build --local-base makes it)")
        marker = f"stage-{tmp_path.name}"  # names this build's stage image among everyone's
        (tmp_path / "Dockerfile").write_text(DOCKERFILE.replace("{marker}", marker))
        tag = f"mstar-test-stages:{tmp_path.name.lower()[-20:]}"
        steps: list[str] = []
        docker_build(client, tmp_path, tag, {"BASE": LOCAL_BASE}, {"mstar.test": "stages"}, steps.append)
        try:
            client.images.get(tag)
            orphans = [i.id for i in client.images.list(filters={"dangling": True})
                       if marker in (i.history()[0].get("CreatedBy") or "")]
            assert orphans == []
            assert any("FROM" in s for s in steps)
        finally:
            client.images.remove(tag, force=True)
    finally:
        client.close()
