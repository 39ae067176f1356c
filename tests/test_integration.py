"""The whole pipeline in a temporary copy of the repository: outputs, no-op rerun, same hashes."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from repo_copy import (
    committed_lock,
    copy_repo,
    dirty_inputs,
    input_differences,
    lock_differences,
    out_hashes,
    run_dvc,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Set as every token variable; must appear in no output. Built at run time so that it is not
# in this file's own text (which the repository copy contains).
CANARY = f"canary-{uuid.uuid4().hex}"
SECRETS = {"ZTF_API_TOKEN": CANARY, "MAST_API_TOKEN": CANARY}


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_dvc(repo, *args, env=SECRETS)


def _out_hashes(repo: Path) -> dict[str, str]:
    return out_hashes(yaml.safe_load((repo / "dvc.lock").read_text()))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_repo(tmp_path_factory.mktemp("clone1"))
    _dvc(repo, "repro")
    return repo


def test_pipeline_outputs(first_run: Path) -> None:
    repo = first_run
    metrics = json.loads((repo / "reports/metrics/ingest_ztf.json").read_text())
    assert metrics["packets"] == 39 and metrics["quarantined"] == 1
    assert metrics["alerts"] == 35  # 38 decodable packets, 3 re-serialised under newer schemas
    report = json.loads((repo / "reports/ingest_ztf.json").read_text())
    assert [q["file"] for q in report["quarantined"]] == [
        "data/sample/ztf/alerts/87704463155000_v0_schemaless_datum.avro"
    ]
    assert (repo / "data/raw/ztf/lightcurves.parquet").is_file()
    assert (repo / "data/processed/features.parquet").is_file()
    assert any((repo / "data/raw/ztf/cutouts").rglob("*.fits"))
    summary = json.loads((repo / "reports/validation/summary.json").read_text())
    assert summary["success"] is True, summary
    assert summary["tables"]["frames"]["rows"] == 8  # 4 masters + 4 calibrated science frames
    assert summary["tables"]["cubes"]["rows"] == 4 * 4 + 4  # lwa: 4 steps x 4 subbands; ccd: 4
    for name in ("lwa", "ccd"):
        assert (repo / f"data/processed/zarr/{name}.zarr/zarr.json").is_file()
    assert len(list((repo / "data/interim/calibration/science").glob("*.fits"))) == 4


def test_committed_dvc_lock_is_current(first_run: Path) -> None:
    """A fresh run reproduces the dvc.lock committed at HEAD exactly: code, params, data and
    output hashes (library versions pinned in constraints.txt). Compared with ``git show
    HEAD:dvc.lock``, never with the working tree's copy, which ``make repro`` rewrites."""
    committed = committed_lock()
    fresh = yaml.safe_load((first_run / "dvc.lock").read_text())
    if fresh == committed:
        return
    diffs = "; ".join(lock_differences(committed, fresh)[:8])
    dirty = dirty_inputs()
    if dirty:
        pytest.fail(
            f"dvc.lock at HEAD predates uncommitted changes to {dirty[:6]}: {diffs}. "
            "After changing code, params or data, run `make repro` and commit dvc.lock with them."
        )
    stale = input_differences(committed, fresh)
    if stale:
        pytest.fail(
            f"the dvc.lock committed at HEAD is stale: HEAD's own code, params or data differ "
            f"from what it records ({'; '.join(stale[:8])}). Whoever changed them did not "
            "re-run the pipeline: run `make repro` and commit dvc.lock."
        )
    pytest.fail(
        f"a fresh run of the committed code, params and data gives other output bytes than the "
        f"dvc.lock committed at HEAD: {diffs}. The inputs it records are identical, so this is "
        "a platform difference (CPU SIMD level, library versions or C library), not a stale "
        "lock: do not re-commit dvc.lock from this machine. Run `pytest "
        "tests/test_simd_levels.py` and see docs/reproducibility.md."
    )


def test_second_repro_is_a_noop(first_run: Path) -> None:
    out = _dvc(first_run, "repro").stdout
    assert "Running stage" not in out, out
    status = _dvc(first_run, "status").stdout
    assert "up to date" in status, status


def test_second_clone_gives_identical_hashes(first_run: Path, tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "clone2")
    _dvc(repo, "repro")
    assert _out_hashes(repo) == _out_hashes(first_run)


def test_no_secret_reaches_outputs(first_run: Path) -> None:
    for p in first_run.rglob("*"):
        if p.is_file() and ".git" not in p.parts:
            assert CANARY.encode() not in p.read_bytes(), f"token leaked into {p}"


def test_dvc_exp_run_composes_params_from_conf(first_run: Path) -> None:
    """`dvc exp run -S` goes through Hydra: params.yaml is recomposed from conf/ + override,
    and only the stages that read the changed section run again."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    subprocess.run(["git", "add", "-A"], cwd=first_run, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "baseline"], cwd=first_run, check=True, env=env)
    out = _dvc(first_run, "exp", "run", "-S", "features.min_points=5").stdout
    assert "Running stage 'build_lightcurve_features'" in out
    assert "Running stage 'ingest_ztf'" not in out
    params = yaml.safe_load((first_run / "params.yaml").read_text())
    assert params["features"]["min_points"] == 5
    metrics = json.loads((first_run / "reports/metrics/build_lightcurve_features.json").read_text())
    assert metrics["groups_with_features"] < metrics["groups"]
