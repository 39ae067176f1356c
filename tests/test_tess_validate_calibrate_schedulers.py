"""ingest_tess, validate and calibrate_images on every scheduler: byte-identical outputs.

Each stage runs on its sample inputs under ``synchronous``, ``processes`` (2 workers) and
``distributed`` on one real :class:`distributed.LocalCluster` (worker processes, loopback)
shared by the session. The cluster is started from another working directory than the runs', so
a task that names a file by a relative path fails there.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from astropipe.config import compose

ROOT = Path(__file__).resolve().parents[1]
SCHEDULERS = ("synchronous", "processes", "distributed")


@pytest.fixture(scope="module")
def cluster(dask_cluster: str) -> str:
    """The session's LocalCluster (tests/conftest.py), started from a directory of its own."""
    return dask_cluster


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
) -> dict[str, tuple[Path, dict[str, str]]]:
    """Scheduler → the run's working directory and its outputs' SHA-256."""
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
        out[kind] = (work, _digests(work, t["dir"], t["report"], t["metrics"]))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", SCHEDULERS[1:])
def test_ingest_tess_outputs_do_not_depend_on_the_scheduler(
    tess_runs: dict[str, tuple[Path, dict[str, str]]], kind: str
) -> None:
    reference = tess_runs["synchronous"][1]
    assert len(reference) > 10  # the table, the copies, the report, the metrics
    assert tess_runs[kind][1] == reference


# ---------------------------------------------------------------------------------------------
# calibrate_images

NIGHT = ROOT / "data/sample/ccd/night"


@pytest.fixture(scope="module")
def calibration_runs(
    tmp_path_factory: pytest.TempPathFactory, cluster: str
) -> dict[str, dict[str, str]]:
    from astropipe.calibration.stage import run

    out = {}
    for kind in SCHEDULERS:
        work = tmp_path_factory.mktemp(f"calibration-{kind}")
        params = {
            "calibration": {"inputs": {"path": "night"}},  # relative, as under DVC
            "compute": _compute(kind, cluster),
        }
        shutil.copytree(NIGHT, work / "night")
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(work)
            run(params)
        out[kind] = _digests(work, "data/interim/calibration", "reports")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", SCHEDULERS[1:])
def test_calibrate_images_outputs_do_not_depend_on_the_scheduler(
    calibration_runs: dict[str, dict[str, str]], kind: str
) -> None:
    assert len(calibration_runs["synchronous"]) == 10  # 4 masters, 4 frames, report, metrics
    assert calibration_runs[kind] == calibration_runs["synchronous"]


def _cosmics_pass(night: str, out: str, tasks_per_child: int | None) -> tuple[str, bool]:
    """Calibrate the first science frame of ``night`` into ``out``, the cosmic-ray pass in
    children replaced every ``tasks_per_child`` bands (None: in this process); return the
    file's SHA-256 and whether this process is daemonic (a dask nanny's worker is)."""
    import multiprocessing

    import dask

    from astropipe.calibration.config import CalibrationConfig
    from astropipe.calibration.masters import build_masters
    from astropipe.calibration.science import write_science
    from astropipe.calibration.stage import plan_from_params

    cfg = CalibrationConfig.from_params({"calibration": {"inputs": {"path": night}}})
    with dask.config.set(scheduler="synchronous"):
        plan = plan_from_params(cfg)[0]
        built = build_masters(plan, cfg, tile_rows=64, workers=1)
    sp = plan.science[0]
    write_science(
        sp.frame,
        cfg,
        out,
        bias=built[sp.bias],
        flat=built[sp.flat],
        dark=built[sp.dark] if sp.dark else None,
        masters={"bias": ("b", "0" * 64)},
        band_rows=41,
        cr_band_rows=57,
        cr_tasks_per_child=tasks_per_child,
    )
    digest = hashlib.sha256(Path(out).read_bytes()).hexdigest()
    return digest, multiprocessing.current_process().daemon


@pytest.mark.slow
def test_cosmic_ray_child_starts_from_a_daemonic_cluster_worker(
    cluster: str, tmp_path: Path
) -> None:
    """multiprocessing refuses children to a daemonic process (a nanny's worker): the cosmic-ray
    child is a subprocess, so the pass runs there and writes the bytes of the in-process pass."""
    import cloudpickle

    from astropipe.compute import ComputeConfig, workers

    here, _ = _cosmics_pass(str(NIGHT), str(tmp_path / "here.fits"), None)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    try:
        cfg = ComputeConfig(scheduler="distributed", address=cluster)
        with workers(cfg) as pool:
            [(there, daemonic)] = pool.map(
                _cosmics_pass, [str(NIGHT)], out=str(tmp_path / "child.fits"), tasks_per_child=2
            )
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert daemonic
    assert there == here


# ---------------------------------------------------------------------------------------------
# validate


@pytest.fixture(scope="module")
def validate_inputs(
    tmp_path_factory: pytest.TempPathFactory,
    base_params: dict[str, Any],
    tess_runs: dict[str, tuple[Path, dict[str, str]]],
) -> tuple[Path, dict[str, Any]]:
    """Small good ZTF tables, frames and cubes (the validate tests' own) and ingest_tess's
    real sample table, at the configured relative paths; the params validating them."""
    from test_validation_images import _paths, write_cubes, write_frames
    from test_validation_stage import write_tables

    work = tmp_path_factory.mktemp("validate-inputs")
    params = copy.deepcopy(base_params)
    for name in ("koi", "toi", "objects", "mast_observations", "mast_products"):
        params["validation"]["tables"].pop(name)  # their inputs: their own stages' tests
    tess = params["validation"]["tess_lightcurves"]["path"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        write_tables()
        write_frames(_paths(params))
        write_cubes(_paths(params))
        (work / tess).parent.mkdir(parents=True)
        shutil.copyfile(tess_runs["synchronous"][0] / tess, work / tess)
    return work, params


@pytest.fixture(scope="module")
def validate_runs(
    tmp_path_factory: pytest.TempPathFactory,
    validate_inputs: tuple[Path, dict[str, Any]],
    cluster: str,
) -> dict[str, dict[str, str]]:
    from astropipe.validation.stage import run

    inputs, base = validate_inputs
    out = {}
    for kind in SCHEDULERS:
        work = tmp_path_factory.mktemp(f"validate-{kind}")
        shutil.copytree(inputs, work, dirs_exist_ok=True)
        params = {**copy.deepcopy(base), "compute": _compute(kind, cluster)}
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(work)
            summary = run(params)
        assert summary["success"], summary
        out[kind] = _digests(work, "reports")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", SCHEDULERS[1:])
def test_validate_outputs_do_not_depend_on_the_scheduler(
    validate_runs: dict[str, dict[str, str]], kind: str
) -> None:
    assert len(validate_runs["synchronous"]) > 4  # summary, metrics, the docs pages
    assert validate_runs[kind] == validate_runs["synchronous"]
