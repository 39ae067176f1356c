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
def gx_context() -> Any:
    """One ephemeral great-expectations context for the session (the stage reuses it)."""
    from astropipe.validation.runner import make_context

    return make_context()
