"""build_lightcurve_features with cleaning: the cleaned table, metrics, plots, hand-off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from astropipe.features.clean import masks as M
from astropipe.features.stage import FeaturesConfig, run
from astropipe.io.tables import read_metadata, write_parquet
from astropipe.lightcurve import FLAG_NEGATIVE_DIFF, to_lightcurve_table
from astropipe.tess import TessReadConfig, read_lightcurves

ROOT = Path(__file__).resolve().parents[1]


def _ztf(tmp: Path) -> str:
    rng = np.random.default_rng(2)
    rows = []
    for oid in ["ZTF18aaaaaaa", "ZTF19bbbbbbb"]:
        t = 58800.0 + np.sort(rng.uniform(0, 200, 40))
        m = 18.0 + 0.05 * rng.standard_normal(40)
        m[5] -= 2.0  # a bright spike: clipped (lower side for magnitudes)
        flags = np.zeros(40, dtype=np.int64)
        flags[7] = FLAG_NEGATIVE_DIFF
        rows.append(
            pd.DataFrame(
                {
                    "object_id": oid,
                    "survey": "ztf",
                    "source": "alert",
                    "band": "zr",
                    "mjd": t,
                    "mag": m,
                    "mag_err": 0.05,
                    "is_upper_limit": False,
                    "flags": flags,
                }
            )
        )
    path = tmp / "ztf.parquet"
    write_parquet(to_lightcurve_table(pd.concat(rows, ignore_index=True)), path)
    return str(path)


def _tess(tmp: Path) -> str:
    paths = (
        sorted((ROOT / "data/sample/tess").glob("hlsp*.fits"))[:1]
        + sorted((ROOT / "data/sample/kepler").glob("ktwo*.fits"))[:1]
    )
    table = read_lightcurves(paths, TessReadConfig()).table
    path = tmp / "tess.parquet"
    pq.write_table(table, path)
    return str(path)


def _params(tmp: Path, inputs: list[str], **clean) -> dict:
    out = {
        "features": str(tmp / "features.parquet"),
        "metrics": str(tmp / "metrics.json"),
        "clean": str(tmp / "interim/lightcurves_clean.parquet"),
        "plot_lightcurves": str(tmp / "plots/lc.csv"),
        "plot_features": str(tmp / "plots/features.csv"),
    }
    return {"features": {"inputs": inputs, "clean": clean, "outputs": out}}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("clean-stage")
    params = _params(tmp, [_ztf(tmp), _tess(tmp)])
    return tmp, run(params)


def test_every_input_point_is_in_the_cleaned_table(ran) -> None:
    tmp, summary = ran
    clean = pd.read_parquet(tmp / "interim/lightcurves_clean.parquet")
    # ZTF + TESS sector 1 + K2 C5 (cadences with a finite time, as ingest_tess keeps them)
    assert len(clean) == summary["clean"]["points"] == 80 + 19261 + 3657
    cm = clean["clean_mask"].to_numpy()
    assert summary["clean"]["kept"] == int(np.count_nonzero((cm & M.REMOVED) == 0))
    removed = summary["clean"]["removed"]
    assert sum(removed.values()) + summary["clean"]["kept"] == len(clean)
    # the two negative-difference detections, and the cadences ingest_tess flagged with bit 33
    # (FLAG_QUALITY_MASKED, its default preset: 1158 TESS + 207 K2), excluded by the default
    # features.exclude_flags; the quality step (same preset) then finds none left
    assert removed["excluded"] == 2 + 1158 + 207
    assert removed["quality"] == 0
    ztf = clean[clean["survey"] == "ztf"]
    spikes = ztf.groupby("object_id")["raw_value"].idxmin()
    assert (clean.loc[spikes, "clean_mask"] & M.OUTLIER).all()
    # Magnitudes stay magnitudes; fluxes are detrended and normalised near 1.
    kept = (cm & M.REMOVED) == 0
    np.testing.assert_array_equal(ztf["value"][kept[ztf.index]], ztf["raw_value"][kept[ztf.index]])
    flux = clean[(clean["kind"] == "flux") & kept]
    assert abs(flux["value"].median() - 1.0) < 1e-3
    meta = read_metadata(tmp / "interim/lightcurves_clean.parquet")
    assert meta["provenance"]["clean_mask_bits"]["outliers"] == M.OUTLIER


def test_features_from_cleaned_points_and_metrics(ran) -> None:
    tmp, summary = ran
    feats = pd.read_parquet(tmp / "features.parquet")
    assert set(feats["object_id"]) == {
        "ZTF18aaaaaaa",
        "ZTF19bbbbbbb",
        "TIC 25155310",
        "EPIC 211436265",
    }
    ztf = feats[feats["object_id"] == "ZTF18aaaaaaa"].iloc[0]
    assert ztf["n_obs"] == 38  # 40 - negative diff - spike
    metrics = json.loads((tmp / "metrics.json").read_text())
    assert metrics["groups_with_features"] == 4
    assert 10 < metrics["clean"]["median_flux_scatter_ppm"] < 5000
    assert 10 < metrics["median_cdpp_ppm"] < 5000  # the features' CDPP of the two flux curves
    assert set(metrics["clean"]) == {
        "median_flux_scatter_ppm",
        "points",
        "kept",
        "removed",
        "transit_masked",
        "fit_clipped",
        "curves",
        "segments",
    }


def test_plot_tables(ran) -> None:
    tmp, _ = ran
    lc = pd.read_csv(tmp / "plots/lc.csv")
    assert list(lc.columns) == ["curve", "mjd", "raw", "clean", "removed_by"]
    assert lc["curve"].nunique() == 3 and lc.groupby("curve").size().max() <= 2000
    feats = pd.read_csv(tmp / "plots/features.csv")
    assert list(feats.columns) == ["object_id", "band", "median", "std", "amplitude"]


def test_rerun_is_byte_identical(ran, tmp_path: Path) -> None:
    tmp, _ = ran
    params = _params(tmp_path, [_ztf(tmp_path), _tess(tmp_path)])
    run(params)
    a = pd.read_parquet(tmp / "interim/lightcurves_clean.parquet")
    b = pd.read_parquet(tmp_path / "interim/lightcurves_clean.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert (tmp / "plots/lc.csv").read_bytes() == (tmp_path / "plots/lc.csv").read_bytes()


def test_cleaning_config_is_typed() -> None:
    cfg = FeaturesConfig.from_params({"features": {"clean": {"detrend": {"window_length": 51}}}})
    assert cfg.clean.detrend.window_length == 51
    from astropipe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"features.clean.detrend.method: 'spline'"):
        FeaturesConfig.from_params({"features": {"clean": {"detrend": {"method": "spline"}}}})


def test_ztf_catflags_apply_to_ztf_rows_named_as_the_ingest_writes_them() -> None:
    """Regression: the quality step compared survey with 'ztf' while ZTF rows say 'ZTF', so
    features.clean.quality.ztf_catflags never removed anything."""
    from astropipe.features.clean.pipeline import _quality_bad

    cfg = FeaturesConfig.from_params(
        {"features": {"clean": {"quality": {"ztf_catflags": 32768}}}}
    ).clean
    lc = pd.DataFrame(
        {
            "survey": ["ZTF", "ZTF", "TESS"],
            "flags": np.array([32768, 0, 32768], dtype=np.int64),
            "quality": np.zeros(3, dtype=np.int64),
            "mission": ["", "", "TESS"],
        }
    )
    assert _quality_bad(lc, cfg).tolist() == [True, False, False]
