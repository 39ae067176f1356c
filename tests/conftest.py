"""Shared fixtures: the repository root and its sample data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def sample() -> Path:
    """``data/sample``."""
    return SAMPLE


@pytest.fixture()
def in_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test with the repository root as working directory (relative sample paths)."""
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.fixture(scope="session")
def reference_lock(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """dvc.lock of one whole ``dvc repro`` in a fresh copy, with the committed conf/ (threads,
    every SIMD target this CPU has): the run that other runs (SIMD levels, schedulers) match."""
    import yaml

    from repo_copy import copy_repo, run_dvc

    repo = copy_repo(tmp_path_factory.mktemp("reference-run"))
    run_dvc(repo, "repro")
    return yaml.safe_load((repo / "dvc.lock").read_text())


@pytest.fixture(scope="session")
def gx_context() -> Any:
    """One ephemeral great-expectations context for the session (the stage reuses it)."""
    from astropipe.validation.runner import make_context

    return make_context()
