"""ingest_tess, validate and calibrate_images on every scheduler: byte-identical outputs.

Each stage runs on its sample inputs under ``synchronous``, ``processes`` (2 workers) and
``distributed`` on one real :class:`distributed.LocalCluster` (worker processes, loopback)
shared by the module. The cluster is started from another working directory than the runs', so
a task that names a file by a relative path fails there.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astropipe.config import compose

ROOT = Path(__file__).resolve().parents[1]
SCHEDULERS = ("synchronous", "processes", "distributed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a two-process LocalCluster whose workers run in a directory of their own."""
    from distributed import LocalCluster

    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cluster-cwd"))
    try:
        local = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    finally:
        os.chdir(here)
    with local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def base_params() -> dict[str, Any]:
    return compose(root=ROOT)


def _compute(kind: str, address: str | None) -> dict[str, Any]:
    if kind == "distributed":
        return {"scheduler": "distributed", "address": address, "workers": 2}
    return {"scheduler": kind, "workers": 1 if kind == "synchronous" else 2}


def _digests(root: Path, *names: str) -> dict[str, str]:
    """SHA-256 of every file under each of ``names`` (files or directories) below ``root``."""
    out = {}
    for name in names:
        top = root / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for p in paths:
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _run_in(
    work: Path, monkeypatch: pytest.MonkeyPatch, run: Any, params: dict[str, Any]
) -> dict[str, Any]:
    with monkeypatch.context() as mp:
        mp.chdir(work)
        return run(params)


# ---------------------------------------------------------------------------------------------
# ingest_tess


@pytest.fixture(scope="module")
def tess_runs(
    tmp_path_factory: pytest.TempPathFactory, cluster: str, base_params: dict[str, Any]
) -> dict[str, dict[str, str]]:
    from astropipe.tess.stage import run

    out = {}
    for kind in SCHEDULERS:
        work = tmp_path_factory.mktemp(f"tess-{kind}")
        for name in ("tess", "kepler"):
            shutil.copytree(ROOT / "data/sample" / name, work / "data/sample" / name)
        params = {**copy.deepcopy(base_params), "compute": _compute(kind, cluster)}
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(work)
            run(params)
        t = params["tess"]["outputs"]
        out[kind] = _digests(work, t["dir"], t["report"], t["metrics"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", SCHEDULERS[1:])
def test_ingest_tess_outputs_do_not_depend_on_the_scheduler(
    tess_runs: dict[str, dict[str, str]], kind: str
) -> None:
    assert len(tess_runs["synchronous"]) > 10  # the table, the copies, the report, the metrics
    assert tess_runs[kind] == tess_runs["synchronous"]
