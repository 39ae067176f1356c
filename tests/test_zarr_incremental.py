"""fits_to_zarr: appends, batching/order independence, crash recovery, locking."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from astropipe.errors import LockedError
from astropipe.zarrcube.lock import StoreLock, lock_path
from astropipe.zarrcube.stage import run
from zarr_helpers import ROOT, make_lwa, params, tree_digest


def _steps(files: list[Path]) -> list[list[Path]]:
    by: dict[str, list[Path]] = {}
    for f in files:
        by.setdefault(f.name[:15], []).append(f)
    return [by[k] for k in sorted(by)]


@pytest.fixture
def pool(tmp_path: Path) -> list[list[Path]]:
    """Four time steps x three subbands, kept outside the input directory."""
    return _steps(make_lwa(tmp_path / "pool"))


def _stage(files: list[Path], inputs: Path) -> None:
    inputs.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, inputs / f.name)


def _reference(pool: list[list[Path]], tmp_path: Path) -> dict[str, str]:
    inputs, out = tmp_path / "in", tmp_path / "ref.zarr"
    _stage([f for s in pool for f in s], inputs)
    run(params(inputs, out), collection="lwa")
    ref = tree_digest(out)
    shutil.rmtree(inputs)
    return ref


@pytest.mark.parametrize(
    "batches",
    [[[0, 1], [2, 3]], [[2, 3], [0, 1]], [[3], [1], [0, 2]], [[0], [1], [2], [3]]],
    ids=["append", "earlier-later", "scattered", "one-by-one"],
)
def test_batches_give_the_same_store(pool, tmp_path: Path, batches) -> None:
    ref = _reference(pool, tmp_path)
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    for batch in batches:
        _stage([f for i in batch for f in pool[i]], inputs)
        run(params(inputs, out), collection="lwa")
    assert tree_digest(out) == ref


def test_append_does_not_rewrite_existing_chunks(pool, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    _stage(pool[0] + pool[1], inputs)
    run(params(inputs, out), collection="lwa")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("c/*") if p.is_file()}
    sky_before = {p: p.stat().st_ino for p in (out / "SKY").rglob("*") if p.is_file()}
    _stage(pool[2] + pool[3], inputs)
    summary = run(params(inputs, out), collection="lwa")
    assert summary == {**summary, "written": 2, "skipped": 2, "time_steps": 4}
    for p, ino in sky_before.items():
        if p.name != "zarr.json":
            assert p.stat().st_ino == ino, f"{p} was rewritten"
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if "/ra/" not in str(p))


def test_append_only_directory(pool, tmp_path: Path) -> None:
    """Old files may leave the input directory: stored steps are kept as they are."""
    ref = _reference(pool, tmp_path)
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    _stage(pool[0] + pool[1], inputs)
    run(params(inputs, out), collection="lwa")
    for f in pool[0] + pool[1]:
        (inputs / f.name).unlink()
    _stage(pool[2] + pool[3], inputs)
    run(params(inputs, out), collection="lwa")
    assert tree_digest(out) == ref


_KILL_MID_STEP = textwrap.dedent(
    """
    import os, signal, sys
    from astropipe.zarrcube import steps
    from astropipe.zarrcube.stage import run
    from tests.zarr_helpers import params
    from pathlib import Path

    def dying(root, spec, idx, value):
        if idx == 2 and spec.name == "BMAJ":  # SKY of step 2 is on disk, the rest is not
            os.kill(os.getpid(), signal.SIGKILL)
        return real(root, spec, idx, value)

    real = steps.write_array
    steps.write_array = dying
    # one step at a time, in this process: steps 0 and 1 are done (1 not yet flagged)
    run({**params(Path(sys.argv[1]), Path(sys.argv[2])), "compute": {"scheduler":
        "synchronous"}}, collection="lwa")
    """
)


def test_sigkill_mid_step_then_rerun_is_identical(pool, tmp_path: Path) -> None:
    ref = _reference(pool, tmp_path)
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    _stage([f for s in pool for f in s], inputs)
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_MID_STEP, str(inputs), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # the half-written step opens but is not marked complete
    ds = xr.open_zarr(out, consolidated=False)
    flags = ds.step_complete.values  # step 1's task ran before step 0 was flagged
    assert flags[0] == 1 and flags[2] == 0
    assert np.isfinite(ds.SKY.isel(time=2).values).all()  # its pixels did land...
    assert np.isnan(ds.BMAJ.isel(time=2).values).all()  # ...the rest did not
    summary = run(params(inputs, out), collection="lwa")
    # step 0 is skipped; 2 and 3 (whose checksums never reached the manifest) are redone
    assert summary["skipped"] in (1, 2) and summary["written"] == 4 - summary["skipped"]
    assert tree_digest(out) == ref


@pytest.mark.slow
def test_sigkill_from_outside_then_rerun_is_identical(tmp_path: Path) -> None:
    files = make_lwa(tmp_path / "in", n_times=8, size=128)
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    ref_out = tmp_path / "ref.zarr"
    run(params(inputs, ref_out, chunks={"time": 1, "frequency": 1, "sky": 16}), collection="lwa")
    code = (
        "import sys; from pathlib import Path; from astropipe.zarrcube.stage import run; "
        "from tests.zarr_helpers import params; "
        "run(params(Path(sys.argv[1]), Path(sys.argv[2]), "
        "chunks={'time': 1, 'frequency': 1, 'sky': 16}), collection='lwa')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(inputs), str(out)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (out / "SKY" / "c" / "2").exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run(params(inputs, out, chunks={"time": 1, "frequency": 1, "sky": 16}), collection="lwa")
    assert len(files) == 24
    assert tree_digest(out) == tree_digest(ref_out)


def test_second_writer_is_refused(pool, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    _stage(pool[0], inputs)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from astropipe.zarrcube.lock import StoreLock\n"
         "with StoreLock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)",
         str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=r"lwa\.zarr\.lock.*another fits_to_zarr run"):
            run(params(inputs, out), collection="lwa")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    run(params(inputs, out), collection="lwa")  # the dead holder's lock is gone
    assert zarr.open_group(out, mode="r")["step_complete"][:].tolist() == [1]


def test_lock_in_process_and_release(tmp_path: Path) -> None:
    store = tmp_path / "x.zarr"
    with StoreLock(store):
        assert lock_path(store).read_text().strip() == str(os.getpid())
        with pytest.raises(LockedError, match="x.zarr.lock"):
            with StoreLock(store):
                pass
    assert not lock_path(store).exists()
    with StoreLock(store):
        pass


def test_interrupted_step_whose_files_left_is_dropped(pool, tmp_path: Path) -> None:
    ref_inputs, ref = tmp_path / "ref_in", tmp_path / "ref.zarr"
    _stage(pool[0] + pool[1], ref_inputs)
    run(params(ref_inputs, ref), collection="lwa")
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    _stage(pool[0] + pool[1] + pool[2], inputs)
    code = _KILL_MID_STEP  # dies half-way through step 2
    proc = subprocess.run(
        [sys.executable, "-c", code, str(inputs), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    for f in pool[2]:
        (inputs / f.name).unlink()
    summary = run(params(inputs, out), collection="lwa")
    assert summary["time_steps"] == 2 and summary["written"] in (0, 1)
    assert zarr.open_group(out, mode="r")["SKY"].shape[0] == 2
    # same bytes as a store built from steps 0 and 1 alone, apart from the input directory name
    digest, expected = tree_digest(out), tree_digest(ref)
    assert {k for k in digest if digest[k] != expected[k]} <= {"zarr.json"}
    assert set(digest) == set(expected)


_RSS = """
import resource, sys
from pathlib import Path
from astropipe.zarrcube.stage import run
from zarr_helpers import params
run(params(Path(sys.argv[1]), Path(sys.argv[2])), collection="lwa")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_time_steps(tmp_path: Path) -> None:
    rss, sizes = [], []
    for n in (3, 12):
        inputs = tmp_path / f"in{n}"
        files = make_lwa(inputs, n_times=n, size=512, freqs_mhz=(41.0, 46.0, 50.0, 55.0, 59.0))
        sizes.append(sum(f.stat().st_size for f in files))
        proc = subprocess.run(
            [sys.executable, "-c", _RSS, str(inputs), str(tmp_path / f"{n}.zarr")],
            cwd=ROOT / "tests",
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
        )
        assert proc.returncode == 0, proc.stderr
        rss.append(int(proc.stdout.strip().splitlines()[-1]))
    # 4x the time steps (+47 MB of input): the peak moves by far less than the extra input
    assert rss[1] - rss[0] < 0.25 * (sizes[1] - sizes[0]), (rss, sizes)


def test_time_chunks_do_not_depend_on_the_first_batch(pool, tmp_path: Path) -> None:
    """Regression: with zarr.chunks.time > 1 the time-chunk size was taken from the number of
    steps in the first batch, so a 1 + 3 build differed from a 4-step build."""

    def build(name: str, batches: list[list[int]]) -> dict[str, str]:
        inputs, out = tmp_path / "in", tmp_path / f"{name}.zarr"
        shutil.rmtree(inputs, ignore_errors=True)
        for batch in batches:
            _stage([f for i in batch for f in pool[i]], inputs)
            p = params(inputs, out)
            p["zarr"]["chunks"]["time"] = 4
            run(p, collection="lwa")
        return tree_digest(out)

    assert build("one", [[0, 1, 2, 3]]) == build("two", [[0], [1, 2, 3]])


def test_metrics_describe_the_store_not_the_run(pool, tmp_path: Path) -> None:
    """Regression: the metrics file carried written/skipped, so an appended store and a fresh
    build of the same inputs gave different DVC metrics (and dvc.lock hashes)."""
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    _stage([f for i in (0, 1) for f in pool[i]], inputs)
    p = params(inputs, out)
    run(p, collection="lwa")
    _stage([f for i in (2, 3) for f in pool[i]], inputs)
    appended = run(p, collection="lwa")
    metrics = Path(p["zarr"]["collections"]["lwa"]["metrics"])
    first = metrics.read_bytes()
    fresh_out = tmp_path / "fresh.zarr"
    p2 = params(inputs, fresh_out)
    fresh = run(p2, collection="lwa")
    assert appended["written"] == 2 and fresh["written"] == 4  # the runs differ...
    second = Path(p2["zarr"]["collections"]["lwa"]["metrics"]).read_bytes()
    assert first.replace(b"lwa.zarr", b"X") == second.replace(
        b"fresh.zarr", b"X"
    )  # ...not the metric
    assert "written" not in json.loads(first) and "skipped" not in json.loads(first)
