"""The runbooks' commands, run as a user would in a copy that ran the pipeline.

docs/recovery.md (a failed stage, then ``dvc checkout``), docs/experiments.md (keep, discard,
apply an experiment) and docs/cluster.md (pointing the pipeline at a cluster). Each test works
in its own copy of the session's reference run (outputs, DVC cache and git history included),
so no test runs the whole pipeline again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from repo_copy import BIN, copy_run, git, run_dvc

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FEATURES = ("data/processed/features.parquet", "data/interim/lightcurves_clean.parquet")
UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture()
def repo(reference_run: Path, tmp_path: Path) -> Path:
    return copy_run(reference_run, tmp_path / "repo")


@pytest.fixture(scope="module")
def experimented(reference_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference run after `dvc exp run -S features.min_points=5 -n minpts5` (run once;
    each test works in its own copy)."""
    repo = copy_run(reference_run, tmp_path_factory.mktemp("experimented") / "repo")
    run_dvc(repo, "exp", "run", "-S", "features.min_points=5", "-n", "minpts5")
    return repo


def _bytes(repo: Path) -> dict[str, bytes]:
    return {rel: (repo / rel).read_bytes() for rel in FEATURES}


def _make(repo: Path, *targets: str) -> str:
    """``make <targets>`` in the copy with the project's environment (the copy has no .venv)."""
    proc = subprocess.run(
        ["make", *targets, f"BIN={BIN}"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo / "src")},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"make {' '.join(targets)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _set_min_points(path: Path, value: int) -> None:
    """Edit ``features.min_points`` in conf/features/default.yaml, as a user's editor would."""
    text, n = re.subn(r"(?m)^min_points: \d+", f"min_points: {value}", path.read_text())
    assert n == 1, f"no top-level min_points in {path}"
    path.write_text(text)


def test_failed_stage_outputs_come_back_with_dvc_checkout(repo: Path) -> None:
    """docs/recovery.md: DVC removes a failing stage's outputs; `git checkout -- params.yaml
    dvc.lock reports/` + `dvc checkout` bring back the last good ones byte for byte (reports/:
    the metrics and plots DVC does not cache, which it removed too)."""
    before = _bytes(repo)
    params = repo / "params.yaml"
    pattern = r"(?m)^(features:\n(?:  .*\n)*?  min_points:) 3$"
    text, n = re.subn(pattern, r"\1 4", params.read_text())
    assert n == 1
    params.write_text(text)  # hand-edited: the stage refuses it (params.yaml differs from conf/)
    failed = run_dvc(repo, "repro", check=False)
    assert failed.returncode != 0
    assert "params.yaml differs from conf/ at key features.min_points" in failed.stderr
    assert not any((repo / rel).exists() for rel in FEATURES)  # DVC removed them first

    git(repo, "checkout", "--", "params.yaml", "dvc.lock", "reports/")
    run_dvc(repo, "checkout")
    assert _bytes(repo) == before
    assert UP_TO_DATE in run_dvc(repo, "status").stdout


def test_keep_an_experiment_into_conf(
    reference_run: Path, experimented: Path, tmp_path: Path
) -> None:
    """docs/experiments.md "Keep it": the value into conf/, `make params`, `make repro` has
    nothing to do, because the outputs are the experiment's."""
    repo = copy_run(experimented, tmp_path / "repo")
    after = _bytes(repo)
    assert after[FEATURES[0]] != _bytes(reference_run)[FEATURES[0]]

    _set_min_points(repo / "conf" / "features" / "default.yaml", 5)
    _make(repo, "params")
    repro = _make(repo, "repro")
    assert "Running stage" not in repro, repro
    assert _bytes(repo) == after
    assert UP_TO_DATE in run_dvc(repo, "status").stdout
    git(repo, "add", "conf/", "params.yaml", "dvc.lock", "reports/")
    git(repo, "commit", "-q", "-m", "features: min_points 5")
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_discard_then_apply_an_experiment(
    reference_run: Path, experimented: Path, tmp_path: Path
) -> None:
    """docs/experiments.md "Discard it", then `dvc exp apply` brings the experiment back."""
    before = _bytes(reference_run)
    repo = copy_run(experimented, tmp_path / "repo")
    experiment = _bytes(repo)

    _make(repo, "params")
    git(repo, "checkout", "--", "dvc.lock", "reports/")
    run_dvc(repo, "checkout")
    assert _bytes(repo) == before
    assert UP_TO_DATE in run_dvc(repo, "status").stdout

    run_dvc(repo, "exp", "apply", "minpts5")
    assert _bytes(repo) == experiment
    assert re.search(r"(?m)^  min_points: 5$", (repo / "params.yaml").read_text())

    _make(repo, "params")
    git(repo, "checkout", "--", "dvc.lock", "reports/")
    run_dvc(repo, "checkout")
    run_dvc(repo, "exp", "remove", "minpts5")
    assert "minpts5" not in run_dvc(repo, "exp", "list").stdout
    assert _bytes(repo) == before


def test_cluster_runbook_composes_a_cluster_config(root: Path) -> None:
    """docs/cluster.md's first command shows the compute section that points at a cluster."""
    proc = subprocess.run(
        [
            str(BIN / "astropipe"),
            "show-config",
            "compute",
            "compute.scheduler=distributed",
            "compute.address=tcp://10.0.0.5:8786",
        ],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert list(shown) == ["compute"]  # one section, not the whole configuration
    assert shown["compute"]["scheduler"] == "distributed"
    assert shown["compute"]["address"] == "tcp://10.0.0.5:8786"
