"""Cleaning steps on synthetic light curves with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.stats import sigma_clip

from astropipe.configtypes import from_mapping
from astropipe.errors import ConfigError
from astropipe.features.clean import (
    CleanConfig,
    clean_curve,
    clean_lightcurves,
    iqr_mask,
    mad_mask,
    modified_z_mask,
    normalise,
    segment_ids,
    short_segments,
    sigma_clip_mask,
    transit_mask,
    vote,
    wavelet_denoise,
)
from astropipe.features.clean import masks as M
from astropipe.features.clean.config import (
    DetrendConfig,
    GapConfig,
    NormaliseConfig,
    OutlierConfig,
    TransitConfig,
)
from astropipe.features.clean.precision import round_significand

CADENCE = 2.0 / 60 / 24  # 2 min in days


def _curve(n: int = 3000, *, seed: int = 1, noise: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = 58400.0 + CADENCE * np.arange(n)
    return t, 1.0 + noise * rng.standard_normal(n)


def _inject_transit(
    t: np.ndarray, f: np.ndarray, *, period: float, epoch: float, hours: float, depth: float
) -> np.ndarray:
    f = f.copy()
    f[transit_mask(t, period=period, epoch=epoch, duration_days=hours / 24, factor=1.0)] -= depth
    return f


# --- outliers -------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma,maxiters", [(3.0, 5), (2.5, 1), (4.0, None)])
def test_sigma_clip_equals_astropy(sigma: float, maxiters: int | None) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(2000)
    x[::97] += 8.0
    x[::131] -= 6.0
    ref = sigma_clip(x, sigma=sigma, maxiters=maxiters, cenfunc="median", stdfunc="std").mask
    np.testing.assert_array_equal(sigma_clip_mask(x, sigma=sigma, maxiters=maxiters), ref)
    up = sigma_clip(x, sigma_lower=np.inf, sigma_upper=sigma, maxiters=maxiters).mask
    np.testing.assert_array_equal(
        sigma_clip_mask(x, sigma=sigma, maxiters=maxiters, clip="upper"), up
    )


@pytest.mark.parametrize(
    "method",
    [
        lambda x, c: sigma_clip_mask(x, sigma=5.0, clip=c),
        lambda x, c: mad_mask(x, threshold=5.0, clip=c),
        lambda x, c: iqr_mask(x, factor=3.0, clip=c),
        lambda x, c: modified_z_mask(x, threshold=5.0, clip=c),
    ],
    ids=["sigma", "mad", "iqr", "modified_z"],
)
def test_injected_outliers_recovered_per_method(method) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(5000)
    hi = np.arange(10, 5000, 500)
    lo = np.arange(260, 5000, 500)
    x[hi] += 20.0
    x[lo] -= 20.0
    both = method(x, "both")
    assert set(np.flatnonzero(both)) == set(hi) | set(lo)
    assert set(np.flatnonzero(method(x, "upper"))) == set(hi)
    assert set(np.flatnonzero(method(x, "lower"))) == set(lo)


def test_modified_z_is_iglewicz_hoaglin() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    # median 3, MAD 1: M = 0.6745 * (x - 3) = 65.4 for 100, 0.6745 for 4.
    np.testing.assert_array_equal(modified_z_mask(x, threshold=3.5), [0, 0, 0, 0, 1])
    assert not modified_z_mask(np.ones(10)).any()  # MAD 0: nothing flagged


def test_isolation_forest_recovers_spikes_and_is_seeded() -> None:
    from astropipe.features.clean import isolation_forest_mask

    rng = np.random.default_rng(11)
    x = rng.standard_normal(2000)
    spikes = np.arange(5, 2000, 200)
    x[spikes] += 30.0
    m = isolation_forest_mask(x, contamination=0.005, seed=0, clip="upper")
    assert set(spikes) <= set(np.flatnonzero(m))
    assert (x[m] > np.median(x)).all()
    np.testing.assert_array_equal(
        m, isolation_forest_mask(x, contamination=0.005, seed=0, clip="upper")
    )


def test_vote_k_of_n() -> None:
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    c = np.array([1, 1, 0, 0], bool)
    np.testing.assert_array_equal(vote([a, b, c], k=2), [1, 1, 0, 0])
    np.testing.assert_array_equal(vote([a, b, c], k=1), [1, 1, 1, 0])
    with pytest.raises(ConfigError, match="ensemble_k=4"):
        vote([a, b, c], k=4)


def test_ensemble_through_clean_curve() -> None:
    t, f = _curve(4000)
    f[[100, 900, 2000]] += 0.01
    cfg = CleanConfig(
        outliers=OutlierConfig(method="ensemble", ensemble_k=3),
        detrend=DetrendConfig(method="none"),
        normalise=NormaliseConfig(method="none"),
    )
    res = clean_curve(t, f, np.full_like(f, 1e-4), kind="flux", cfg=cfg)
    assert set(np.flatnonzero(res.mask & M.OUTLIER)) == {100, 900, 2000}


# --- the default keeps transits -------------------------------------------------------------


def test_injected_transit_survives_default_cleaning() -> None:
    t, f = _curve(6000)
    f = f * (1.0 + 0.002 * (t - t[0]))  # a slow trend
    f = _inject_transit(t, f, period=2.0, epoch=t[0] + 0.7, hours=3.0, depth=0.01)
    f[[50, 3000]] += 0.01  # cosmic rays: high outliers
    in_tr = transit_mask(t, period=2.0, epoch=t[0] + 0.7, duration_days=3.0 / 24, factor=1.0)
    cfg = CleanConfig(
        detrend=DetrendConfig(
            transits=TransitConfig(ephemerides=[]),  # no ephemeris: the transit must still survive
        )
    )
    res = clean_curve(t, f, np.full_like(f, 1e-4), kind="flux", cfg=cfg)
    assert not (res.mask[in_tr] & M.REMOVED).any()  # no transit point dropped
    assert set(np.flatnonzero(res.mask & M.OUTLIER)) == {50, 3000}


def test_transit_depth_kept_with_ephemeris_mask() -> None:
    # A shallow, long transit (2 sigma deep): the fit's own sigma mask cannot see it.
    t, f = _curve(6000)
    f = _inject_transit(t, f, period=2.0, epoch=t[0] + 0.7, hours=5.0, depth=2e-4)
    in_tr = transit_mask(t, period=2.0, epoch=t[0] + 0.7, duration_days=5.0 / 24, factor=1.0)
    from astropipe.features.clean.config import Ephemeris

    eph = Ephemeris(object_id="x", period=2.0, epoch=t[0] + 0.7, duration_hours=5.0)
    cfg = CleanConfig(
        detrend=DetrendConfig(window_length=201, transits=TransitConfig(ephemerides=[eph]))
    )
    lc = pd.DataFrame(
        {
            "object_id": "x",
            "survey": "TESS",
            "source": "spoc",
            "band": "TESS",
            "mjd": t,
            "flux": f,
            "flux_err": 1e-4,
            "is_upper_limit": False,
            "flags": 0,
        }
    )
    table, summary = clean_lightcurves(lc, cfg)
    depth = 1.0 - np.median(table["value"].to_numpy()[in_tr])
    assert depth == pytest.approx(2e-4, abs=3e-5)
    assert summary["transit_masked"] >= in_tr.sum()
    # Without the mask, Savitzky-Golay partly fits the transit away.
    table2, _ = clean_lightcurves(lc, CleanConfig(detrend=DetrendConfig(window_length=201)))
    depth2 = 1.0 - np.median(table2["value"].to_numpy()[in_tr])
    assert depth2 < 0.6 * depth


def test_magnitudes_mirror_the_clip_and_stay_magnitudes() -> None:
    rng = np.random.default_rng(5)
    t = 58000.0 + np.sort(rng.uniform(0, 300, 200))
    m = 18.0 + 0.02 * rng.standard_normal(200)
    m[10] += 1.0  # fainter: an eclipse, must survive
    m[20] -= 1.0  # much brighter than everything: clipped by the default (lower side)
    res = clean_curve(t, m, np.full(200, 0.02), kind="mag", cfg=CleanConfig())
    assert res.mask[20] & M.OUTLIER and not res.mask[10] & M.REMOVED
    kept = (res.mask & M.REMOVED) == 0
    np.testing.assert_array_equal(res.value[kept], m[kept])  # no detrend, no normalisation
    assert (res.segment[kept] == 0).all()  # no gap split for magnitudes


# --- gaps -----------------------------------------------------------------------------------


def test_gaps_split_and_short_segments_dropped() -> None:
    t = np.concatenate([np.arange(100), 200 + np.arange(30), 400 + np.arange(120)]) * CADENCE
    t[100:] += 1.0  # 24 h gaps before the 2nd and 3rd pieces
    t[130:] += 1.0
    seg = segment_ids(t, gap_threshold_hours=12.0)
    assert list(np.unique(seg, return_counts=True)[1]) == [100, 30, 120]
    short = short_segments(seg, min_points=50)
    assert short.sum() == 30 and short[100:130].all()
    cfg = CleanConfig(
        gaps=GapConfig(min_points_per_segment=50), detrend=DetrendConfig(window_length=51)
    )
    res = clean_curve(t, 1.0 + 0 * t, np.full(len(t), 1e-4), kind="flux", cfg=cfg)
    assert int(np.count_nonzero(res.mask & M.SHORT_SEGMENT)) == 30
    assert sorted(set(res.segment[res.segment >= 0])) == [0, 1]


# --- detrend, normalise, denoise ------------------------------------------------------------


def test_known_linear_trend_removed() -> None:
    t, f = _curve(3000, noise=0.0)
    trend = 1000.0 + 50.0 * (t - t[0])
    cfg = CleanConfig(normalise=NormaliseConfig(method="none"))
    res = clean_curve(t, trend * f, np.full_like(f, 1.0), kind="flux", cfg=cfg)
    np.testing.assert_allclose(res.trend, trend, rtol=1e-12)
    np.testing.assert_allclose(res.value, 1.0, rtol=1e-12)


def test_biweight_removes_trend_and_keeps_transit() -> None:
    t, f = _curve(3000)
    f = f * (1.0 + 0.01 * np.sin((t - t[0]) / 1.5))
    f = _inject_transit(t, f, period=10.0, epoch=t[0] + 2.0, hours=2.0, depth=0.005)
    cfg = CleanConfig(
        detrend=DetrendConfig(method="biweight"), normalise=NormaliseConfig(method="none")
    )
    res = clean_curve(t, f, np.full_like(f, 1e-4), kind="flux", cfg=cfg)
    in_tr = transit_mask(t, period=10.0, epoch=t[0] + 2.0, duration_days=2.0 / 24, factor=1.0)
    kept = (res.mask & M.REMOVED) == 0
    assert kept.sum() > 2950
    assert np.std(res.value[kept & ~in_tr]) < 2e-4
    assert np.median(res.value[kept & ~in_tr]) == pytest.approx(1.0, abs=5e-5)
    assert 1.0 - np.median(res.value[kept & in_tr]) == pytest.approx(0.005, abs=1e-3)
    # Stored at 30 significand bits.
    np.testing.assert_array_equal(res.trend, round_significand(res.trend, bits=30))


@pytest.mark.parametrize(
    "method,expect",
    [
        ("median", [0.4, 0.8, 1.2, 2.0]),
        ("mean", [1 / 2.75, 2 / 2.75, 3 / 2.75, 5 / 2.75]),
        ("unity", [0.2, 0.4, 0.6, 1.0]),
        ("minmax", [0.0, 0.25, 0.5, 1.0]),
        ("zscore", (np.array([1, 2, 3, 5.0]) - 2.75) / np.std([1, 2, 3, 5.0])),
        ("quantile", (np.array([1, 2, 3, 5.0]) - 2.5) / 1.0),
        (
            "robust",
            (np.array([1, 2, 3, 5.0]) - 2.5)
            / (np.percentile([1, 2, 3, 5.0], 95) - np.percentile([1, 2, 3, 5.0], 5)),
        ),
    ],
)
def test_normalise_methods(method: str, expect) -> None:
    v, e = normalise(np.array([1.0, 2.0, 3.0, 5.0]), np.ones(4), method=method)
    np.testing.assert_allclose(v, expect, rtol=1e-15)
    assert np.isfinite(e).all()


def test_normalise_zero_scale_is_nan_not_inf() -> None:
    v, _ = normalise(np.ones(5), None, method="minmax")
    assert np.isnan(v).all()
    with pytest.raises(ConfigError, match="normalise.method='l2'"):
        normalise(np.ones(3), None, method="l2")


def test_wavelet_denoise_reduces_noise() -> None:
    t, f = _curve(4096, noise=1e-3)
    signal = 1.0 + 0.01 * np.sin(2 * np.pi * (t - t[0]) / 2.0)
    out = wavelet_denoise(signal + (f - 1.0), wavelet="db4", levels=4)
    assert np.std(out - signal) < 0.6 * np.std(f - 1.0)
    with pytest.raises(ConfigError, match="denoise.wavelet='db99'"):
        wavelet_denoise(f, wavelet="db99")


# --- the table: nothing silently lost ---------------------------------------------------------


def test_every_point_kept_or_has_exactly_one_removal_bit() -> None:
    t, f = _curve(400)
    f[5] = np.nan
    f[7] += 0.05
    q = np.zeros(400, dtype=np.int64)
    q[9] = 32  # TESS Desat: in the default preset
    lc = pd.DataFrame(
        {
            "object_id": "TIC 1",
            "survey": "TESS",
            "source": "spoc",
            "band": "TESS",
            "mission": "TESS",
            "quality": q,
            "mjd": t,
            "flux": f,
            "flux_err": 1e-4,
            "is_upper_limit": False,
            "flags": q,
        }
    )
    lc.loc[11, "is_upper_limit"] = True
    table, summary = clean_lightcurves(lc, CleanConfig(detrend=DetrendConfig(window_length=51)))
    cm = table["clean_mask"].to_numpy()
    removed = cm & M.REMOVED
    assert all(bin(int(r)).count("1") <= 1 for r in removed)
    assert cm[5] & M.NONFINITE and cm[7] & M.OUTLIER and cm[9] & M.QUALITY and cm[11] & M.EXCLUDED
    assert summary["kept"] == 396 and summary["points"] == 400
    assert np.isnan(table["value"].to_numpy()[removed != 0]).all()
    assert np.isfinite(table["value"].to_numpy()[removed == 0]).all()


def test_quality_preset_hard_drops_more() -> None:
    t, f = _curve(200)
    q = np.zeros(200, dtype=np.int64)
    q[3] = 64  # ApertureCosmic: hard only
    lc = pd.DataFrame(
        {
            "object_id": "TIC 1",
            "survey": "TESS",
            "source": "spoc",
            "band": "TESS",
            "mission": "TESS",
            "quality": q,
            "mjd": t,
            "flux": f,
            "flux_err": 1e-4,
            "is_upper_limit": False,
            "flags": q,
        }
    )
    base = dict(detrend=DetrendConfig(method="none"))
    soft, _ = clean_lightcurves(lc, CleanConfig(**base))
    hard, _ = clean_lightcurves(
        lc,
        from_mapping(
            CleanConfig,
            {"quality": {"mission": "hard"}, "detrend": {"method": "none"}},
            where="features.clean",
        ),
    )
    assert soft["clean_mask"][3] == 0 and hard["clean_mask"][3] & M.QUALITY


def test_config_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"features.clean.quality.mission: 'soft' is not valid"):
        from_mapping(CleanConfig, {"quality": {"mission": "soft"}}, where="features.clean")
    with pytest.raises(
        ConfigError,
        match=r"features.clean.detrend.window_length: 100 is not valid; expected an odd",
    ):
        from_mapping(CleanConfig, {"detrend": {"window_length": 100}}, where="features.clean")
    with pytest.raises(ConfigError, match=r"features.clean.outliers.clip"):
        from_mapping(CleanConfig, {"outliers": {"clip": "top"}}, where="features.clean")


def test_relations_between_keys_refused_at_compose_time() -> None:
    with pytest.raises(
        ConfigError,
        match=r"features.clean.outliers: .* expected ensemble_k <= the number of "
        r"ensemble_methods \(3\), not 4",
    ):
        from_mapping(
            CleanConfig,
            {"outliers": {"ensemble_methods": ["sigma", "mad", "iqr"], "ensemble_k": 4}},
            where="features.clean",
        )
    with pytest.raises(
        ConfigError,
        match=r"features.clean.detrend: .* expected polyorder < window_length \(5\), not 5",
    ):
        from_mapping(
            CleanConfig, {"detrend": {"window_length": 5, "polyorder": 5}}, where="features.clean"
        )


def test_catalog_ephemerides_from_objects_koi_toi(tmp_path) -> None:
    from astropipe.errors import InputFileError
    from astropipe.features.clean import catalog_ephemerides

    with pytest.raises(InputFileError, match="run ingest_catalogs first"):
        catalog_ephemerides(tmp_path)
    pd.DataFrame(
        {
            "catalog": ["koi", "toi", "koi"],
            "catalog_id": ["K00001.01", "100.01", "K09999.01"],
            "object_id": ["KIC 1", "TIC 2", "KIC 3"],
        }
    ).to_parquet(tmp_path / "objects.parquet")
    pd.DataFrame(
        {
            "kepoi_name": ["K00001.01", "K09999.01"],
            "koi_period": [2.5, np.nan],  # no period: left out
            "koi_time0bk": [170.0, 171.0],
            "koi_duration": [3.0, 2.0],
        }
    ).to_parquet(tmp_path / "koi.parquet")
    pd.DataFrame(
        {"toi": ["100.01"], "pl_orbper": [1.25], "pl_tranmid": [2458325.5], "pl_trandurh": [2.0]}
    ).to_parquet(tmp_path / "toi.parquet")
    eph = catalog_ephemerides(tmp_path)
    assert list(eph["object_id"]) == ["KIC 1", "TIC 2"]
    assert eph["epoch"].tolist() == [170.0 + 54832.5, 58325.0]  # BKJD and BJD to MJD
    assert eph["period"].tolist() == [2.5, 1.25]
