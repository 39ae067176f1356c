"""The pipeline's output bytes do not depend on where its work runs (``compute`` group).

A whole ``dvc repro`` in a fresh copy of the repository whose ``conf/compute/default.yaml``
names ``distributed`` and the address of a real :class:`distributed.LocalCluster` on loopback
(worker processes with their own working directory, so relative paths and unpicklable tasks
fail here) must record the same output hashes as the reference run (``threads``, two
workers). Each stage's own tests also compare ``synchronous`` and ``processes`` runs
(tests/test_*_compute.py, tests/test_tess_validate_calibrate_schedulers.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from repo_copy import BIN, copy_repo, lock_differences, out_hashes, run_dvc

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _set_compute(repo: Path, **values: object) -> None:
    """Write the copy's conf/compute/default.yaml and compose its params.yaml from it."""
    path = repo / "conf" / "compute" / "default.yaml"
    conf = yaml.safe_load(path.read_text())
    conf.update(values)
    path.write_text(yaml.safe_dump(conf, sort_keys=False))
    subprocess.run(
        [str(BIN / "python"), "-m", "astropipe.params"],
        cwd=repo,
        env={"PYTHONPATH": str(repo / "src"), "PATH": str(BIN)},
        check=True,
        capture_output=True,
    )


def _check(repo: Path, reference_lock: dict, what: str) -> None:
    run_dvc(repo, "repro")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert out_hashes(lock) == out_hashes(reference_lock), (
        f"outputs under {what} differ from the threads run: "
        f"{lock_differences(reference_lock, lock)}; a stage's result depends on where or in "
        "which order its tasks ran."
    )


def test_distributed_cluster_gives_identical_outputs(
    dask_cluster: str, reference_lock: dict, tmp_path: Path
) -> None:
    repo = copy_repo(tmp_path / "repo")
    _set_compute(repo, scheduler="distributed", address=dask_cluster)
    _check(repo, reference_lock, f"a LocalCluster at {dask_cluster}")
