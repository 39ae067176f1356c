"""Shared fixtures: the repository root and its sample data."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
def reference_module_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where :func:`reference_run`'s stage processes list the modules they loaded."""
    return tmp_path_factory.mktemp("module-log")


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory, reference_module_log: Path) -> Path:
    """A fresh copy of the repository after one whole ``dvc repro`` with the committed conf/
    (threads, every SIMD target this CPU has), its run committed to the copy's git. Tests must
    not change it: :func:`repo_copy.copy_run` gives a copy to work in. Each stage process also
    records the modules it loaded (:func:`repo_copy.module_log_env`, read by
    tests/test_dvc_deps.py)."""
    from repo_copy import copy_repo, git, module_log_env, run_dvc

    repo = copy_repo(tmp_path_factory.mktemp("reference-run"))
    run_dvc(repo, "repro", env=module_log_env(repo, reference_module_log))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pipeline run")
    return repo


@pytest.fixture(scope="session")
def reference_lock(reference_run: Path) -> dict:
    """``dvc.lock`` of :func:`reference_run`: the run that other runs (SIMD levels,
    schedulers) must match."""
    import yaml

    return yaml.safe_load((reference_run / "dvc.lock").read_text())


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The scheduler address of one ``distributed.LocalCluster`` for the session: two worker
    processes of one thread each on 127.0.0.1, started from a temporary directory so that a
    task naming a file by a relative path fails as it would on a real cluster."""
    from distributed import LocalCluster

    where = tmp_path_factory.mktemp("dask-cluster")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        local = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            local_directory=str(where),
        )
    try:
        yield local.scheduler_address
    finally:
        local.close()


@pytest.fixture(scope="session")
def gx_context() -> Any:
    """One ephemeral great-expectations context for the session (the stage reuses it)."""
    from astropipe.validation.runner import make_context

    return make_context()
