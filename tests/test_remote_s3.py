"""`dvc push` / `dvc pull` through an S3 remote, against moto's S3 server on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def s3_endpoint():
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
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_then_pull_roundtrip(tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DVC_NO_ANALYTICS": "1",
    }
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="astropipe")

    def sh(*args: str, cwd: Path = tmp_path) -> str:
        proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    dvc = str(BIN / "dvc")
    sh("git", "init", "-q")
    sh(dvc, "init", "-q")
    sh(dvc, "remote", "add", "-d", "storage", "s3://astropipe/cache")
    sh(dvc, "remote", "modify", "storage", "endpointurl", s3_endpoint)
    data = tmp_path / "data"
    data.mkdir()
    payload = os.urandom(200_000)
    (data / "frame.bin").write_bytes(payload)
    sh(dvc, "add", "data")
    sh(dvc, "push")
    # Forget everything local, then get it back from the remote.
    (data / "frame.bin").unlink()
    sh("rm", "-rf", ".dvc/cache")
    sh(dvc, "pull")
    assert (data / "frame.bin").read_bytes() == payload
