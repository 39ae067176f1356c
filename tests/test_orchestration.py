"""The optional Prefect flow over the DVC stages, under Prefect's local test harness.

The core never imports Prefect; the flow runs ``dvc repro <stage>`` per stage in dvc.yaml order
with retries. A stub ``dvc`` (a script that logs its calls and fails on cue) pins the order and
the retries; one slow test runs the real stages in a copy of the repository.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from astropipe.orchestration import StageFailed, repro_stage, stage_names
from repo_copy import copy_repo, run_dvc

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["ingest_ztf", "build_lightcurve_features", "fits_to_zarr@lwa"]


def test_core_never_imports_prefect() -> None:
    code = (
        "import sys, astropipe.cli, astropipe.orchestration, astropipe.config, astropipe.ingest\n"
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"
    for path in (ROOT / "src/astropipe").rglob("*.py"):
        if path.name != "prefect_flow.py":
            text = path.read_text()
            assert "import prefect" not in text and "from prefect" not in text, path


def _stub_dvc(tmp: Path, *, fail: dict[str, int]) -> Path:
    """A ``dvc`` that appends its argv to calls.jsonl; ``repro S`` fails ``fail[S]`` times."""
    script = tmp / "dvc"
    script.write_text(
        f"""#!{sys.executable}
import json, sys, pathlib
log = pathlib.Path({str(tmp / "calls.jsonl")!r})
with log.open("a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args[:2] == ["stage", "list"]:
    print("\\n".join({STAGES!r}))
    raise SystemExit(0)
fail = {fail!r}
stage = args[1]
tried = sum(1 for ln in log.read_text().splitlines() if json.loads(ln) == args)
if tried <= fail.get(stage, 0):
    print("ERROR: failed to reproduce '" + stage + "': service unavailable", file=sys.stderr)
    raise SystemExit(1)
print("Running stage '" + stage + "'")
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _calls(tmp: Path) -> list[list[str]]:
    return [json.loads(ln) for ln in (tmp / "calls.jsonl").read_text().splitlines()]


def test_core_runs_stages_and_fails_in_one_line(tmp_path: Path) -> None:
    dvc = str(_stub_dvc(tmp_path, fail={"build_lightcurve_features": 5}))
    assert stage_names(tmp_path, dvc=dvc) == STAGES
    assert "Running stage 'ingest_ztf'" in repro_stage("ingest_ztf", tmp_path, dvc=dvc)
    with pytest.raises(StageFailed) as info:
        repro_stage("build_lightcurve_features", tmp_path, dvc=dvc)
    assert str(info.value) == (
        "dvc repro build_lightcurve_features failed (exit 1): ERROR: failed to reproduce "
        "'build_lightcurve_features': service unavailable"
    )
    with pytest.raises(StageFailed, match="not found; activate .venv"):
        repro_stage("ingest_ztf", tmp_path, dvc=str(tmp_path / "no-such-dvc"))


prefect = pytest.importorskip("prefect", reason="optional extra: pip install astropipe[prefect]")


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def test_flow_runs_every_stage_in_order_with_retries(harness, tmp_path: Path) -> None:
    from astropipe.orchestration.prefect_flow import pipeline

    dvc = str(_stub_dvc(tmp_path, fail={"build_lightcurve_features": 2}))
    done = pipeline(str(tmp_path), retries=2, retry_delay_seconds=0, dvc=dvc)
    assert done == STAGES
    repros = [c[1] for c in _calls(tmp_path) if c[0] == "repro"]
    # dvc.yaml order; the flaky stage tried three times (two retries), the others once
    assert repros == [
        "ingest_ztf",
        "build_lightcurve_features",
        "build_lightcurve_features",
        "build_lightcurve_features",
        "fits_to_zarr@lwa",
    ]


def test_flow_fails_when_retries_run_out_and_stops(harness, tmp_path: Path) -> None:
    from astropipe.orchestration.prefect_flow import pipeline

    dvc = str(_stub_dvc(tmp_path, fail={"build_lightcurve_features": 9}))
    with pytest.raises(StageFailed, match="dvc repro build_lightcurve_features failed"):
        pipeline(str(tmp_path), retries=1, retry_delay_seconds=0, dvc=dvc)
    repros = [c[1] for c in _calls(tmp_path) if c[0] == "repro"]
    assert repros == ["ingest_ztf", "build_lightcurve_features", "build_lightcurve_features"]


@pytest.mark.slow
def test_flow_reproduces_the_real_pipeline(harness, tmp_path: Path) -> None:
    from astropipe.orchestration.prefect_flow import pipeline

    repo = copy_repo(tmp_path / "repo")
    bin_dir = Path(sys.executable).parent
    env = {
        "PYTHONPATH": str(repo / "src"),  # the stage commands' python imports the copy's package
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # ... and is the venv's
        "DVC_NO_ANALYTICS": "1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        done = pipeline(str(repo), retries=0, dvc=str(bin_dir / "dvc"))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert done[0] == "ingest_ztf" and "validate" in done and "fits_to_zarr@ccd" in done
    status = run_dvc(repo, "status").stdout
    assert "Data and pipelines are up to date" in status, status
