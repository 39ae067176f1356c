"""The team's remote with the pipeline's own outputs, against moto's S3 server on loopback.

README's team workflow, end to end: in a fresh copy ``dvc repro``, commit ``dvc.lock``, ``dvc
push`` (personal credentials in ``.dvc/config.local`` through ``dvc remote modify --local``);
a teammate clones, ``dvc pull``s, and finds ``dvc status`` clean and every output byte for byte
what was pushed. The same run also pins what a person sees in ``dvc metrics show``: a few
numbers per stage, not hundreds of columns.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from repo_copy import BIN, copy_run, run_dvc

pytestmark = pytest.mark.slow

BUCKET = "astropipe"
#: The committed remote: no endpoint, no credentials (those are personal, in config.local).
REMOTE_URL = f"s3://{BUCKET}/cache"
#: Not a real secret: moto accepts any key. Must never reach a committed file; built at run
#: time so that it is not in this file's own text (which the repository copy contains).
KEY_ID, SECRET = "AKIDTEAMTEST", f"team-secret-{uuid.uuid4().hex}"

# dvc-s3 must not find the machine's own AWS configuration: only what the test sets up
# (the two files are pointed at an empty one by the `empty_aws_config` fixture).
NO_AWS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_DEFAULT_REGION": "us-east-1"}
GIT_ID = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}

#: At most this many metric columns in `dvc metrics show` over the whole pipeline (today ~50;
#: before the long breakdowns moved to the reports: 294).
MAX_METRIC_COLUMNS = 60


@pytest.fixture(scope="module", autouse=True)
def empty_aws_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    NO_AWS.update(AWS_SHARED_CREDENTIALS_FILE=str(empty), AWS_CONFIG_FILE=str(empty))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the team's bucket created."""
    import boto3

    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        ).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_ID},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _dvc(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return run_dvc(repo, *args, env={**NO_AWS, **(env or {})}).stdout


def _files(root: Path, rel: str) -> dict[str, bytes]:
    """Every file of output ``rel`` (a file or a directory) under ``root``, by relative path."""
    p = root / rel
    if p.is_file():
        return {rel: p.read_bytes()}
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def pushed(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, reference_run: Path
) -> Path:
    """A fresh copy that ran the pipeline, committed dvc.lock and pushed to the remote."""
    repo = copy_run(reference_run, tmp_path_factory.mktemp("alice") / "repo")
    # The team's remote, committed; the endpoint and the keys are personal (config.local).
    _dvc(repo, "remote", "add", "-d", "storage", REMOTE_URL)
    _dvc(repo, "remote", "modify", "--local", "storage", "endpointurl", s3_endpoint)
    _dvc(repo, "remote", "modify", "--local", "storage", "access_key_id", KEY_ID)
    _dvc(repo, "remote", "modify", "--local", "storage", "secret_access_key", SECRET)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "pipeline run")
    _dvc(repo, "push")
    return repo


def test_credentials_stay_out_of_git(pushed: Path) -> None:
    committed = _git(pushed, "ls-files")
    assert ".dvc/config" in committed.splitlines()
    assert ".dvc/config.local" not in committed.splitlines()
    assert REMOTE_URL in (pushed / ".dvc/config").read_text()
    for name in committed.splitlines():
        path = pushed / name
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), name
    assert SECRET in (pushed / ".dvc/config.local").read_text()


def test_teammate_pulls_every_output_byte_identical(
    pushed: Path, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> None:
    clone = tmp_path_factory.mktemp("bob") / "astropipe"
    _git(pushed.parent, "clone", "-q", str(pushed), str(clone))
    lock = yaml.safe_load((pushed / "dvc.lock").read_text())
    outs = sorted({o["path"] for st in lock["stages"].values() for o in st.get("outs", [])})
    cached = [p for p in outs if not (clone / p).exists()]
    assert "data/raw/ztf" in cached and "data/processed/features.parquet" in cached, cached
    # The teammate's own credentials, here from the environment (the standard AWS names).
    _dvc(clone, "remote", "modify", "--local", "storage", "endpointurl", s3_endpoint)
    creds = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    _dvc(clone, "pull", env=creds)
    status = _dvc(clone, "status")
    assert "Data and pipelines are up to date" in status, status
    assert json.loads(_dvc(clone, "status", "--json")) == {}
    for rel in outs:
        mine, theirs = _files(pushed, rel), _files(clone, rel)
        assert mine, f"{rel}: no files in the pushed copy"
        assert sorted(theirs) == sorted(mine), f"{rel}: file lists differ"
        bad = [name for name in mine if mine[name] != theirs[name]]
        assert not bad, f"{rel}: differs after dvc pull: {bad[:5]}"


def _metric_columns(data: object, prefix: str = "") -> list[str]:
    """The columns `dvc metrics show` / `dvc exp show` make of one metrics file's JSON."""
    if isinstance(data, dict):
        return [c for k, v in data.items() for c in _metric_columns(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def test_metrics_stay_a_few_numbers_per_stage(pushed: Path) -> None:
    shown = json.loads(_dvc(pushed, "metrics", "show", "--json"))
    (workspace,) = shown.values()  # one revision: the workspace
    files = workspace["data"]
    columns = {f: _metric_columns(m.get("data", {})) for f, m in files.items()}
    total = sum(len(c) for c in columns.values())
    assert total < MAX_METRIC_COLUMNS, {f: len(c) for f, c in columns.items()}
    # one metrics file per stage, under reports/metrics/; the long reports are not metrics
    assert all(f.startswith("reports/metrics/") for f in files), sorted(files)
    assert "reports/ingest_ztf.json" not in files
    ztf = files["reports/metrics/ingest_ztf.json"]["data"]
    assert (ztf["packets"], ztf["alerts"], ztf["quarantined"]) == (39, 35, 1)
    # the breakdowns moved to the report, which is still written
    report = json.loads((pushed / "reports/ingest_ztf.json").read_text())
    assert "schema_versions" in report and "schema_versions" not in ztf
    assert report["quarantined"][0]["file"].endswith("87704463155000_v0_schemaless_datum.avro")


def test_exp_show_only_changed_is_narrow(pushed: Path) -> None:
    """One experiment on a feature parameter: `dvc exp show --only-changed` fits a screen."""
    _dvc(pushed, "exp", "run", "-S", "features.min_points=5", "-n", "minpts5")
    shown = _dvc(pushed, "exp", "show", "--only-changed", "--csv")
    header = shown.splitlines()[0].split(",")
    assert "features.min_points" in header, header
    assert len(header) < 30, header
    # and the workspace is back where a user can keep or discard it (docs/experiments.md)
    params = yaml.safe_load((pushed / "params.yaml").read_text())
    assert params["features"]["min_points"] == 5
    _git(pushed, "checkout", "--", "params.yaml")
    _dvc(pushed, "exp", "remove", "minpts5")
    assert "minpts5" not in _dvc(pushed, "exp", "list")
