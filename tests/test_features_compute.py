"""build_lightcurve_features on the compute model: batches of whole objects, streamed outputs.

The outputs must be byte-identical to the whole-table computation (every point in memory, one
``clean_lightcurves`` and one ``compute_features``, ``write_parquet``: the stage before
streaming) whatever the scheduler — synchronous, threads, processes, a real
:class:`distributed.LocalCluster` with worker processes — and whatever ``features.batch_points``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astropipe.features import stage
from astropipe.features.clean import clean_lightcurves
from astropipe.features.clean.masks import REMOVED, STEP_BITS
from astropipe.features.clean.pipeline import CLEAN_SCHEMA, CLEAN_UNITS
from astropipe.features.clean.report import feature_plot_table, lightcurve_plot_table, write_csv
from astropipe.features.extract import compute_features
from astropipe.features.output import FEATURE_UNITS, FEATURES_SCHEMA, with_survey
from astropipe.io.tables import write_json, write_parquet
from astropipe.lightcurve import FLAG_NEGATIVE_DIFF, to_lightcurve_table
from astropipe.provenance import provenance, relpath, sha256_file
from astropipe.tess import TessReadConfig, read_lightcurves

ROOT = Path(__file__).resolve().parents[1]
#: The spill directory's name (a temporary sibling of the clean output).
SPILL = ".lightcurves_clean.parquet.*.tmp"

OUTPUTS = {
    "features": "out/features.parquet",
    "metrics": "out/metrics.json",
    "clean": "out/interim/lightcurves_clean.parquet",
    "plot_lightcurves": "out/plots/lc.csv",
    "plot_features": "out/plots/features.csv",
}


def _ztf(path: Path) -> None:
    """60 magnitude objects in two bands, rows shuffled (the input is not sorted), with spikes,
    upper limits, negative-difference alerts, repeated epochs and a few too-short curves."""
    rng = np.random.default_rng(5)
    frames = []
    for k in range(60):
        for band in ("zg", "zr"):
            n = 2 if k % 17 == 0 else int(rng.integers(8, 40))
            t = 58800.0 + np.round(rng.uniform(0, 300, n), 1)  # rounded: equal epochs occur
            m = 18.0 + 0.3 * np.sin(t / (1.0 + k)) + 0.05 * rng.standard_normal(n)
            m[0] -= 2.0
            flags = np.where(rng.random(n) < 0.1, FLAG_NEGATIVE_DIFF, 0).astype(np.int64)
            frames.append(
                pd.DataFrame(
                    {
                        "object_id": f"ZTF20a{k:06d}",
                        "survey": "ZTF",
                        "source": "alert",
                        "band": band,
                        "mjd": t,
                        "mag": m,
                        "mag_err": 0.05,
                        "is_upper_limit": rng.random(n) < 0.1,
                        "flags": flags,
                    }
                )
            )
    table = to_lightcurve_table(pd.concat(frames, ignore_index=True))
    order = np.random.default_rng(6).permutation(table.num_rows)
    pq.write_table(table.take(order), path, row_group_size=500)  # several record batches


def _tess(path: Path) -> None:
    paths = (
        sorted((ROOT / "data/sample/tess").glob("hlsp*.fits"))[:1]
        + sorted((ROOT / "data/sample/kepler").glob("ktwo*.fits"))[:1]
    )
    table = read_lightcurves(paths, TessReadConfig()).table.to_pandas()
    # the first 4000 cadences of each curve: a few segments, a test that runs in seconds
    table = table.groupby(["object_id", "source"], sort=False).head(4000)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp = tmp_path_factory.mktemp("features-inputs")
    _ztf(tmp / "ztf.parquet")
    _tess(tmp / "tess.parquet")
    return [str(tmp / "ztf.parquet"), str(tmp / "tess.parquet")]


def _params(inputs: list[str], scheduler: str = "synchronous", **extra: object) -> dict:
    compute = {"scheduler": scheduler, "workers": extra.pop("workers", 2)}
    if "address" in extra:
        compute["address"] = extra.pop("address")
    # a coarser periodogram grid (2 d and up): the same code, a tenth of its time
    extract = {"periodogram": {"min_period": 2.0}}
    return {
        "features": {"inputs": inputs, "outputs": dict(OUTPUTS), "extract": extract, **extra},
        "compute": compute,
    }


def _digests(where: Path) -> dict[str, str]:
    return {k: hashlib.sha256((where / p).read_bytes()).hexdigest() for k, p in OUTPUTS.items()}


def _whole_table_run(params: dict) -> None:
    """The stage as it was before batches: every point in memory, one call of each step."""
    cfg = stage.FeaturesConfig.from_params(params)
    lc = pd.concat([pq.read_table(p).to_pandas() for p in cfg.inputs], ignore_index=True)
    hashes = {relpath(p): sha256_file(p) for p in cfg.inputs}
    cleaned, summary = clean_lightcurves(lc, cfg.clean, exclude_flags=cfg.exclude_flags)
    kept = cleaned[(cleaned["clean_mask"].to_numpy() & REMOVED) == 0]
    feats = with_survey(compute_features(kept, cfg=cfg.extract, min_points=cfg.min_points), kept)
    prov = provenance(stage="build_lightcurve_features", inputs=hashes, params=params["features"])
    write_parquet(
        pa.Table.from_pandas(cleaned, schema=CLEAN_SCHEMA, preserve_index=False),
        cfg.outputs.clean,
        provenance={**prov, "clean_mask_bits": dict(STEP_BITS), "clean_summary": summary},
        units=CLEAN_UNITS,
    )
    write_parquet(
        pa.Table.from_pandas(feats, schema=FEATURES_SCHEMA, preserve_index=False),
        cfg.outputs.features,
        provenance=prov,
        units=FEATURE_UNITS,
    )
    write_csv(lightcurve_plot_table(cleaned), cfg.outputs.plot_lightcurves)
    write_csv(feature_plot_table(feats, cfg.plots.features), cfg.outputs.plot_features)
    groups = kept.groupby(["object_id", "band"]).ngroups
    metrics = {
        "detections_used": len(kept),
        "groups": groups,
        "groups_with_features": len(feats),
        "groups_below_min_points": groups - len(feats),
        "clean": {k: v for k, v in summary.items() if k != "by_survey"},
        "median_cdpp_ppm": round(float(np.nanmedian(feats["cdpp"].to_numpy(np.float64))), 3),
    }
    write_json(metrics, cfg.outputs.metrics)


@pytest.fixture(scope="module")
def reference(inputs: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    where = tmp_path_factory.mktemp("features-reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        _whole_table_run(_params(inputs))
    return _digests(where)


def _run(where: Path, params: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(where)  # the same relative output paths: they are in the provenance
    return stage.run(params)


@pytest.mark.parametrize("batch_points", [1, 7, 500, 10**9])
def test_any_batch_size_gives_the_whole_table_bytes(
    inputs, reference, batch_points, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path, _params(inputs, batch_points=batch_points), monkeypatch)
    assert _digests(tmp_path) == reference
    assert not list(tmp_path.rglob(SPILL))  # the spill directory is gone


@pytest.mark.parametrize(("scheduler", "workers"), [("threads", 3), ("processes", 2)])
def test_threads_and_processes_give_the_same_bytes(
    inputs, reference, scheduler, workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _params(inputs, scheduler, workers=workers, batch_points=300)
    _run(tmp_path, params, monkeypatch)
    assert _digests(tmp_path) == reference


@pytest.fixture(scope="module")
def cluster(dask_cluster: str) -> str:
    """The session's LocalCluster (tests/conftest.py), started from a directory of its own."""
    return dask_cluster


@pytest.mark.slow
def test_a_local_cluster_gives_the_same_bytes(
    inputs, reference, cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _params(inputs, "distributed", address=cluster, batch_points=300)
    _run(tmp_path, params, monkeypatch)
    assert _digests(tmp_path) == reference


def test_row_groups_have_fixed_sizes_whatever_the_batches(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage, "CLEAN_GROUP_ROWS", 1000)
    monkeypatch.setattr(stage, "FEATURES_GROUP_ROWS", 50)
    digests = []
    for batch_points in (1, 333, 10**9):
        where = tmp_path / str(batch_points)
        where.mkdir()
        _run(where, _params(inputs, batch_points=batch_points), monkeypatch)
        digests.append(_digests(where))
        meta = pq.ParquetFile(where / OUTPUTS["clean"]).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert len(sizes) > 2 and set(sizes[:-1]) == {1000} and sizes[-1] <= 1000
        meta = pq.ParquetFile(where / OUTPUTS["features"]).metadata
        assert {meta.row_group(i).num_rows for i in range(meta.num_row_groups - 1)} == {50}
    assert digests[0] == digests[1] == digests[2]


def test_batch_points_is_typed_and_not_in_the_provenance(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from astropipe.errors import ConfigError
    from astropipe.io.tables import read_metadata

    with pytest.raises(ConfigError, match="features.batch_points"):
        stage.FeaturesConfig.from_params({"features": {"batch_points": 0}})
    _run(tmp_path, _params(inputs, batch_points=100), monkeypatch)
    params = read_metadata(tmp_path / OUTPUTS["features"])["provenance"]["params"]
    assert "batch_points" not in params and params["inputs"] == inputs


def test_a_failing_batch_writes_nothing_and_leaves_no_spill(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixed = tmp_path / "mixed.parquet"  # a ZTF object also named in a second survey
    table = pq.read_table(inputs[0]).slice(0, 20).to_pandas()
    table["survey"] = ["ZTF"] * 10 + ["K2"] * 10
    table["object_id"] = "ZTF20a000001"
    table["band"] = "zr"
    table["is_upper_limit"] = False
    table["flags"] = 0
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), mixed)
    with pytest.raises(stage.SurveyMixError, match="several surveys"):
        _run(tmp_path, _params([str(mixed)], "threads", batch_points=5), monkeypatch)
    assert not (tmp_path / "out/features.parquet").exists()
    assert not list(tmp_path.rglob(SPILL))
    lock = tmp_path / (OUTPUTS["clean"] + ".lock")  # an flock file stays, by design
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p not in (mixed, lock)]


def test_a_killed_runs_spill_is_removed_and_a_second_run_is_refused(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from astropipe.io.lock import LockedError, OutputLock

    stale = tmp_path / "out/interim/.lightcurves_clean.parquet.k3j_x9q2.tmp"
    (stale / "batch-000").mkdir(parents=True)  # what a SIGKILLed run leaves
    (stale / "batch-000" / "part-0.arrow").write_bytes(b"partial")
    other = tmp_path / "out/interim/.lightcurves_clean.parquet.mine"  # not ours: kept
    other.write_text("user data")
    _run(tmp_path, _params(inputs, batch_points=500), monkeypatch)
    assert not stale.exists() and other.read_text() == "user data"
    assert not list(tmp_path.rglob(SPILL))
    with OutputLock(tmp_path / OUTPUTS["clean"], writer="a test"):
        with pytest.raises(
            LockedError,
            match="lightcurves_clean.parquet.lock: another build_lightcurve_features run",
        ):
            stage.run(_params(inputs, batch_points=500))


def test_a_dry_run_writes_nothing(inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = _run(tmp_path, _params(inputs, batch_points=500), monkeypatch)
    monkeypatch.chdir(tmp_path / "out")
    dry = stage.run(_params(inputs, batch_points=500), dry_run=True)
    assert dry == {"dry_run": True, **summary}
    assert not (tmp_path / "out/out").exists()


def test_an_object_with_more_than_batch_points_is_a_batch_of_its_own(tmp_path: Path) -> None:
    """The review's example: A×50, B×100000, C×10 at batch_points=100 put B with A."""
    from astropipe.features.batches import plan

    ids = ["A"] * 50 + ["B"] * 100_000 + ["C"] * 10
    pq.write_table(pa.table({"object_id": ids}), tmp_path / "ids.parquet")
    got = plan([str(tmp_path / "ids.parquet")], batch_points=100)
    assert (got.starts, got.points) == (["A", "B", "C"], [50, 100_000, 10])
    filled = plan([str(tmp_path / "ids.parquet")], batch_points=60)
    assert (filled.starts, filled.points) == (["A", "B", "C"], [50, 100_000, 10])
    small = ["A"] * 3 + ["B"] * 3 + ["C"] * 5 + ["D"] * 1
    pq.write_table(pa.table({"object_id": small}), tmp_path / "small.parquet")
    cut = plan([str(tmp_path / "small.parquet")], batch_points=6)
    assert (cut.starts, cut.points) == (["A", "C"], [6, 6])


def _fail_in_spill_copy(path: Path) -> Iterator[pa.Table]:
    raise OSError("disk full (injected while copying the clean table)")
    yield  # a generator, as stage._read_spill


def _fail_in_plot(*args: object) -> pd.DataFrame:
    raise OSError("disk full (injected while building the light-curve plot)")


@pytest.mark.parametrize("where", ["_read_spill", "_lightcurve_plot"])
def test_a_failure_after_the_features_are_written_leaves_every_output_unchanged(
    inputs, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 2.3: features.parquet was renamed into place before the clean table was written."""
    _run(tmp_path, _params(inputs, batch_points=500), monkeypatch)
    before = _digests(tmp_path)
    listing = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    fail = _fail_in_spill_copy if where == "_read_spill" else _fail_in_plot
    monkeypatch.setattr(stage, where, fail)
    with pytest.raises(OSError, match="injected"):
        # other features (min_points) and a subset of the points: every output would change
        stage.run(_params(inputs[:1], batch_points=500, min_points=10))
    assert _digests(tmp_path) == before
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == listing  # no temporaries
