"""The CI workflows call only Makefile targets that exist, and the targets do what they say.

`.github/workflows/*.yml` must stay thin: every step is a `make <target>` (or `.ci/run`, which
is `make setup` + `make test`), so what CI runs is what a person runs. The nightly's overrides
are composed through the schema here, so a renamed key fails this test and not the 3 a.m. run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from astropipe.config import compose

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
#: Programs a workflow must not call directly (a Makefile target does).
FORBIDDEN = ("dvc", "python", "pip", "pytest", "astropipe", "ruff", "curl", "wget")


def _targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def _steps(name: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def _make_calls(run: str) -> list[list[str]]:
    # `${{ ... }}` expressions hold no spaces that matter here: stand in a value for them
    text = re.sub(r"\$\{\{[^}]*\}\}", "X", run)
    calls = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "make":
            calls.append(words[1:])
    return calls


def _make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workflows_parse_and_are_triggered() -> None:
    names = sorted(p.name for p in WORKFLOWS.glob("*.yml"))
    assert names == ["ci.yml", "nightly.yml"]
    for name in names:
        doc = yaml.safe_load((WORKFLOWS / name).read_text())
        on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
        assert on, name
    nightly = yaml.safe_load((WORKFLOWS / "nightly.yml").read_text())
    (cron,) = [c["cron"] for c in nightly[True]["schedule"]]
    assert len(cron.split()) == 5


@pytest.mark.parametrize("name", ["ci.yml", "nightly.yml"])
def test_every_step_calls_only_existing_make_targets(name: str) -> None:
    targets = _targets()
    runs = [s["run"] for s in _steps(name) if "run" in s]
    assert runs, name
    called = []
    for run in runs:
        words = set(re.findall(r"[A-Za-z_][\w.-]*", re.sub(r"\$\{\{[^}]*\}\}", "", run)))
        assert not words & set(FORBIDDEN), f"{name}: call a Makefile target instead: {run!r}"
        if run.strip() == "bash .ci/run":
            called += [["setup"], ["test"]]
            continue
        calls = _make_calls(run)
        if not calls:  # the one step that is not make: computing the night's date
            assert "GITHUB_OUTPUT" in run and "date -u" in run, f"{name}: not a make step: {run!r}"
            continue
        called += calls
    for args in called:
        target = next(a for a in args if "=" not in a)
        assert target in targets, f"{name}: make {target}: no such target in the Makefile"
        # make -n: the target and its variables parse, nothing runs
        proc = _make("-n", *args)
        assert proc.returncode == 0, f"make -n {' '.join(args)}: {proc.stderr}"
    assert {a[0] for a in called} >= ({"setup", "test"} if name == "ci.yml" else {"nightly"})


def test_ci_run_is_exactly_make_setup_and_make_test() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".ci/run").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    commands = [ln for ln in lines if not ln.startswith(("set ", "cd "))]
    assert commands == ["make setup", "make test"]


def test_nightly_secrets_come_from_the_ci() -> None:
    doc = yaml.safe_load((WORKFLOWS / "nightly.yml").read_text())
    env = doc["jobs"]["nightly"]["env"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MAST_API_TOKEN", "ZTF_API_TOKEN"):
        assert env[name] == f"${{{{ secrets.{name} }}}}"
    text = (WORKFLOWS / "nightly.yml").read_text()
    assert "secrets.DVC_REMOTE_URL" in text


def _nightly_overrides(*args: str) -> list[str]:
    proc = _make("-n", "nightly", *args)
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if " exp run " in ln]
    words = shlex.split(line)
    return [words[i + 1] for i, w in enumerate(words) if w == "-S"]


def test_nightly_overrides_compose_through_the_schema() -> None:
    overrides = _nightly_overrides("NIGHT=20240701", "OVERRIDES=ztf.on_error=fail")
    assert overrides[0] == "ztf.alerts.nights=['20240701']" and "tess.source=live" in overrides
    params = compose(overrides, root=ROOT)
    assert params["ztf"]["alerts"]["nights"] == ["20240701"]
    assert params["ztf"]["on_error"] == "fail"
    assert params["tess"]["source"] == "live" and params["tess"]["live"]["limit"] == 4
    # bounded: a target is configured, at most a few light curves, each thinned
    assert params["tess"]["live"]["target_name"] and params["tess"]["live"]["max_points"]


def test_make_test_and_bench_take_arguments() -> None:
    out = _make("-n", "test", "ARGS=-x -q tests/test_cli.py").stdout
    assert out.strip().endswith("-m pytest -x -q tests/test_cli.py")
    assert _make("-n", "bench", "QUICK=1").stdout.split()[-1] == "--quick"
    assert "--quick" not in _make("-n", "bench").stdout
    assert _make("-n", "bench", "BENCH=ztf", "QUICK=1").stdout.split()[-2:] == ["ztf", "--quick"]


@pytest.fixture()
def bare_repo(tmp_path: Path) -> Path:
    """A DVC repository with no remote, this project's Makefile and environment."""
    (tmp_path / "Makefile").write_bytes((ROOT / "Makefile").read_bytes())
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([str(ROOT / ".venv/bin/dvc"), "init", "-q"], cwd=tmp_path, check=True, env=env)
    return tmp_path


def test_nightly_without_a_remote_fails_loudly_before_any_work(bare_repo: Path) -> None:
    proc = _make("nightly", "NIGHT=20240701", cwd=bare_repo)
    assert proc.returncode != 0
    assert "error: make nightly: no default DVC remote" in proc.stderr
    assert "exp run" not in proc.stdout  # stopped before the pipeline


def test_make_remote_then_a_bad_night(bare_repo: Path) -> None:
    proc = _make("remote", cwd=bare_repo)
    assert proc.returncode != 0 and "error: make remote: URL is empty" in proc.stderr
    proc = _make(
        "remote", "URL=s3://team-bucket/astropipe", "ENDPOINT=http://127.0.0.1:9", cwd=bare_repo
    )
    assert proc.returncode == 0, proc.stderr
    local = (bare_repo / ".dvc/config.local").read_text()
    assert "s3://team-bucket/astropipe" in local and "http://127.0.0.1:9" in local
    assert "team-bucket" not in (bare_repo / ".dvc/config").read_text()  # never committed
    proc = _make("nightly", "NIGHT=2024-07-01", cwd=bare_repo)
    assert proc.returncode != 0
    assert "NIGHT=2024-07-01 is not a YYYYMMDD night" in proc.stderr
