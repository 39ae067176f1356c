"""Light-curve features: known answers on synthetic light curves and light-curve's values."""

from __future__ import annotations

import light_curve as lcf
import numpy as np
import pandas as pd
import pytest

from astropipe.features import compute_features as _compute_features
from astropipe.features.extract import FeaturesInputError as FeaturesInputErrorAlias


def compute_features(df: pd.DataFrame, **kw: int) -> pd.DataFrame:
    """The interface on ZTF-like magnitude frames (``mag`` → ``value``, kind ``mag``)."""
    pts = df.rename(columns={"mag": "value"}).assign(survey="ztf", err=0.01, kind="mag")
    return _compute_features(pts, **kw)


def _synthetic(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for o in range(12):
        for band in ("zg", "zr"):
            n = int(rng.integers(4, 80))
            t = np.sort(rng.uniform(58000, 58300, n))
            m = 18 + rng.normal(0, 0.2, n) + rng.normal(0, 0.01) * (t - 58000)
            parts.append(
                pd.DataFrame({"object_id": f"ZTF{o:02d}", "band": band, "mjd": t, "mag": m})
            )
    df = pd.concat(parts, ignore_index=True)
    return df.sample(frac=1.0, random_state=0)  # shuffled: the function must sort


def test_matches_light_curve_package() -> None:
    df = _synthetic()
    feats = compute_features(df).set_index(["object_id", "band"])
    ext = lcf.Extractor(
        lcf.Mean(),
        lcf.Median(),
        lcf.StandardDeviation(),
        lcf.Skew(),
        lcf.Kurtosis(),
        lcf.Amplitude(),
        lcf.MedianAbsoluteDeviation(),
        lcf.LinearTrend(),
    )
    ours_cols = ["mean", "median", "std", "skew", "kurtosis", "amplitude", "mad", "slope"]
    for (obj, band), g in df.groupby(["object_id", "band"]):
        g = g.sort_values("mjd")
        ref = ext(g.mjd.to_numpy(), g.mag.to_numpy(), np.ones(len(g)), sorted=True)[
            : len(ours_cols)
        ]
        ours = feats.loc[(obj, band), ours_cols].to_numpy(float)
        np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-10, err_msg=f"{obj} {band}")
        assert feats.loc[(obj, band), "n_obs"] == len(g)
        assert feats.loc[(obj, band), "time_span"] == pytest.approx(np.ptp(g.mjd))


def test_known_rise_and_decay() -> None:
    # A linear rise of 0.5 mag/day to a peak at t=10, then a 0.1 mag/day decline.
    t = np.arange(0.0, 31.0)
    peak = 10
    m = np.where(t <= peak, 20 - 0.5 * t, 15 + 0.1 * (t - peak))
    df = pd.DataFrame({"object_id": "SN", "band": "zr", "mjd": 60000 + t, "mag": m})
    f = compute_features(df).iloc[0]
    assert f["mjd_peak"] == 60000 + peak
    assert f["mag_peak"] == pytest.approx(15.0)
    assert f["rise_rate"] == pytest.approx(0.5, rel=1e-9)
    assert f["decay_rate"] == pytest.approx(0.1, rel=1e-9)
    assert f["amplitude"] == pytest.approx((20 - 15) / 2)


def test_min_points_and_undefined_moments() -> None:
    df = pd.DataFrame(
        {
            "object_id": ["a"] * 3 + ["b"] * 2,
            "band": "zg",
            "mjd": [1.0, 2.0, 3.0, 1.0, 2.0],
            "mag": [18.0, 18.5, 19.5, 17.0, 17.1],
        }
    )
    f = compute_features(df, min_points=3)
    assert list(f.object_id) == ["a"]
    assert np.isnan(f["kurtosis"].iloc[0])  # needs four points
    assert np.isfinite(f["skew"].iloc[0])
    assert len(compute_features(df, min_points=2)) == 2


def test_rows_are_not_mixed_between_groups() -> None:
    # Two groups with very different levels: any leak across a group boundary shows in the mean.
    df = pd.DataFrame(
        {
            "object_id": ["x"] * 5 + ["y"] * 5,
            "band": "zr",
            "mjd": list(range(5)) * 2,
            "mag": [10.0] * 5 + [20.0] * 5,
        }
    )
    f = compute_features(df)
    assert list(f["mean"]) == [10.0, 20.0] and list(f["std"]) == [0.0, 0.0]


def test_flux_peak_is_the_largest_flux_and_rates_keep_their_sign() -> None:
    # The same rise and decline as test_known_rise_and_decay, in flux: brighter = larger.
    t = np.arange(0.0, 31.0)
    flux = np.where(t <= 10, 100 + 5 * t, 150 - 1 * (t - 10))
    pts = pd.DataFrame(
        {
            "object_id": "T",
            "band": "TESS",
            "survey": "tess",
            "mjd": t,
            "value": flux,
            "err": 1.0,
            "kind": "flux",
        }
    )
    f = _compute_features(pts).iloc[0]
    assert f["mjd_peak"] == 10.0
    assert f["rise_rate"] == pytest.approx(5.0, rel=1e-12)
    assert f["decay_rate"] == pytest.approx(1.0, rel=1e-12)


def test_interface_refuses_missing_columns_unknown_and_mixed_kinds() -> None:
    from astropipe.features.extract import FeaturesInputError

    pts = pd.DataFrame(
        {
            "object_id": "A",
            "band": "zg",
            "survey": "ztf",
            "mjd": [1.0, 2.0, 3.0],
            "value": [18.0, 18.1, 18.2],
            "err": 0.1,
            "kind": ["mag", "flux", "mag"],
        }
    )
    with pytest.raises(FeaturesInputError, match="A band zg mixes kinds"):
        _compute_features(pts)
    with pytest.raises(FeaturesInputError, match="kind \\['counts'\\] is not valid"):
        _compute_features(pts.assign(kind="counts"))
    with pytest.raises(FeaturesInputError, match="lacks column\\(s\\) \\['err'\\]"):
        _compute_features(pts.drop(columns="err"))


def test_sorted_and_shuffled_input_give_the_same_bytes() -> None:
    # Sorted input takes the boundary-counting path, shuffled input the factorize path.
    df = _synthetic().rename(columns={"mag": "value"}).assign(survey="ztf", err=0.02, kind="mag")
    ordered = df.sort_values(["object_id", "band", "mjd"], kind="mergesort")
    a = _compute_features(ordered)
    b = _compute_features(df)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a["object_id"]) == sorted(a["object_id"])


def test_empty_input_and_non_finite_rows() -> None:
    cols = {"object_id": "a", "band": "g", "survey": "z", "err": 0.1, "kind": "mag"}
    empty = pd.DataFrame({**{k: pd.Series([], dtype=object) for k in cols}, "mjd": [], "value": []})
    out = _compute_features(empty)
    assert len(out) == 0 and "ls_period" in out.columns and "cdpp" in out.columns
    # a NaN time and an infinite value are ignored: three usable points remain
    pts = pd.DataFrame({**cols, "mjd": [1.0, 2.0, np.nan, 3.0, 4.0], "value": [5, 6, 5, np.inf, 7]})
    f = _compute_features(pts).iloc[0]
    assert f["n_obs"] == 3 and f["mean"] == 6.0 and f["mjd_last"] == 4.0
    with pytest.raises(FeaturesInputErrorAlias, match=r"kind \['nan'\] is not valid"):
        _compute_features(pts.assign(kind=[None, "mag", "mag", "mag", "mag"]))


def test_chunking_changes_no_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    import astropipe.features.extract as extract

    df = _synthetic().rename(columns={"mag": "value"}).assign(survey="ztf", err=0.02, kind="mag")
    whole = _compute_features(df)
    monkeypatch.setattr(extract, "CHUNK_POINTS", 50)  # many chunks, some groups longer than one
    pd.testing.assert_frame_equal(_compute_features(df), whole, check_exact=True)
