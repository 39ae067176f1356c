"""fits_to_zarr writes the same store bytes whatever ``compute.scheduler`` runs its steps.

The time steps are tasks (:mod:`astropipe.zarrcube.steps`): on ``processes`` they are pickled
to spawned processes, on ``distributed`` to the workers of a real
:class:`distributed.LocalCluster` on loopback, started from another working directory (so a
relative path in a task would name a file that is not there).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from astropipe.zarrcube.stage import run
from zarr_helpers import ROOT, params, tree_digest, write_ccd

LWA_SAMPLE = Path("data/sample/ovro_lwa/simulated")  # relative: the client runs in the repo


@pytest.fixture(scope="module")
def cluster(dask_cluster: str) -> str:
    """The session's LocalCluster (tests/conftest.py), started from a directory of its own."""
    return dask_cluster


@pytest.fixture(scope="module")
def ccd_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three calibrated frames (one with BSCALE/BZERO); 40 x 50 px: edge tiles at sky=32."""
    inputs = tmp_path_factory.mktemp("science")
    write_ccd(inputs / "c.fits", date="2024-03-01T02:02:00", filt="R", exptime=60.0, seed=2)
    write_ccd(inputs / "a.fits", date="2024-03-01T02:00:00", seed=0)
    write_ccd(inputs / "b.fits", date="2024-03-01T02:01:00.5", seed=1, int_sci=True)
    return inputs


def _build(inputs: Path, out: Path, kind: str, compute: dict, **zarr: object) -> dict[str, str]:
    run({**params(inputs, out, kind=kind, **zarr), "compute": compute}, collection=kind)
    return tree_digest(out)


def _schedulers(address: str) -> list[dict]:
    return [
        {"scheduler": "processes", "workers": 2},
        {"scheduler": "distributed", "address": address},
    ]


@pytest.mark.slow
@pytest.mark.parametrize("time_chunk", [1, 2], ids=["direct", "through-zarr"])
def test_lwa_sample_is_byte_identical_on_every_scheduler(
    cluster: str, in_root: Path, tmp_path: Path, time_chunk: int
) -> None:
    chunks = {"time": time_chunk, "frequency": -1, "sky": 32}
    ref = _build(LWA_SAMPLE, tmp_path / "sync.zarr", "lwa", {"scheduler": "synchronous"},
                 chunks=chunks)  # fmt: skip
    assert any(k.startswith("SKY/") for k in ref)
    for n, compute in enumerate(_schedulers(cluster)):
        got = _build(LWA_SAMPLE, tmp_path / f"{n}.zarr", "lwa", compute, chunks=chunks)
        assert got == ref, compute["scheduler"]


@pytest.mark.slow
def test_ccd_frames_are_byte_identical_on_every_scheduler(
    cluster: str, ccd_frames: Path, tmp_path: Path
) -> None:
    ref = _build(ccd_frames, tmp_path / "sync.zarr", "ccd", {"scheduler": "synchronous"})
    for n, compute in enumerate(_schedulers(cluster)):
        assert _build(ccd_frames, tmp_path / f"{n}.zarr", "ccd", compute) == ref


@pytest.mark.slow
def test_append_on_the_cluster_skips_stored_steps(cluster: str, tmp_path: Path) -> None:
    """A rerun hashes the stored steps' inputs on the cluster and rewrites nothing."""
    out = tmp_path / "lwa.zarr"
    compute = {"scheduler": "distributed", "address": cluster}
    inputs = ROOT / LWA_SAMPLE
    first = _build(inputs, out, "lwa", compute)
    summary = run({**params(inputs, out), "compute": compute}, collection="lwa")
    assert summary["written"] == 0 and summary["skipped"] == summary["time_steps"]
    assert tree_digest(out) == first


def test_a_run_on_the_cluster_leaves_no_step_buffers_on_its_workers(
    cluster: str, ccd_frames: Path, tmp_path: Path
) -> None:
    """Review 2.2: the workers of a cluster outlive the run; its layouts (step buffers, read
    threads) were kept there."""
    from distributed import Client

    from astropipe.zarrcube import steps

    _build(ccd_frames, tmp_path / "c.zarr", "ccd", {"scheduler": "distributed", "address": cluster})
    with Client(cluster, set_as_default=False) as client:
        kept = client.run(steps.layouts_kept)
    assert len(kept) == 2 and set(kept.values()) == {0}, kept


def test_a_layout_forgotten_while_a_task_uses_it_is_closed_when_the_task_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another run's forget_layouts (on a shared cluster) never closes a layout under a task."""
    from astropipe.zarrcube import steps
    from astropipe.zarrcube.lwa import LwaLayout

    closed: list[object] = []
    monkeypatch.setattr(LwaLayout, "close", lambda self: closed.append(self))
    steps.forget_layouts()
    with steps._layout("lwa", 32, 2) as busy:
        assert steps.forget_layouts() == 1 and closed == [] and steps.layouts_kept() == 0
        with steps._layout("lwa", 32, 2) as fresh:  # a task starting now gets its own
            assert fresh is not busy
    assert closed == [busy]  # by its last task
    assert steps.forget_layouts() == 1 and closed == [busy, fresh]


def test_concurrent_steps_share_one_read_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 2.2: LwaLayout._pool() made its executor without a lock (one per racing task)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from astropipe.zarrcube import lwa

    class SlowStart(ThreadPoolExecutor):
        def __init__(self, *args: object, **kwargs: object) -> None:
            time.sleep(0.05)  # widens the window between the check and the assignment
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lwa, "ThreadPoolExecutor", SlowStart)
    layout = lwa.LwaLayout(read_workers=2)
    start = threading.Barrier(4)
    got: list[object] = []

    def take() -> None:
        start.wait()
        got.append(layout._pool())

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    layout.close()
    assert len(got) == 4 and len({id(p) for p in got}) == 1
