"""Every feature astropipe and the ``light-curve`` package both define agrees to 1e-9 relative."""

from __future__ import annotations

import light_curve as lcf
import numpy as np
import pandas as pd
import pytest

from astropipe.features import compute_features

#: light-curve extractor → (its value names, our column names).
ORACLE = [
    (lcf.Mean(), ["mean"]),
    (lcf.Median(), ["median"]),
    (lcf.StandardDeviation(), ["std"]),
    (lcf.Skew(), ["skew"]),
    (lcf.Kurtosis(), ["kurtosis"]),
    (lcf.Amplitude(), ["amplitude"]),
    (lcf.MedianAbsoluteDeviation(), ["mad"]),
    (lcf.LinearTrend(), ["slope", None, None]),
    (lcf.BeyondNStd(1.0), ["beyond_1_std"]),
    (lcf.BeyondNStd(2.0), ["beyond_2_std"]),
    (lcf.InterPercentileRange(0.05), ["inter_percentile_range_5"]),
    (lcf.InterPercentileRange(0.1), ["inter_percentile_range_10"]),
    (lcf.InterPercentileRange(0.2), ["inter_percentile_range_20"]),
    (lcf.StetsonK(), ["stetson_k"]),
    (lcf.Eta(), ["eta"]),
    (lcf.LinearFit(), ["linear_fit_slope", "linear_fit_slope_sigma", "linear_fit_reduced_chi2"]),
]


def _curves(seed: int, n_curves: int = 120, *, length: int | None = None) -> pd.DataFrame:
    """Magnitude and flux curves of 4-400 points (or all ``length``) with trends, errors, and
    repeated values."""
    rng = np.random.default_rng(seed)
    parts = []
    for o in range(n_curves):
        n = length or int(rng.integers(4, 400))
        t = np.sort(rng.uniform(58000, 58500, n))
        kind = "flux" if o % 2 else "mag"
        base, scale = (1000.0, 30.0) if kind == "flux" else (18.0, 0.3)
        v = base + rng.normal(0, scale, n) + rng.normal(0, 1e-3) * (t - 58000)
        if o % 7 == 0:  # ties: quantiles and the peak must pick the same element
            v = np.round(v, 1)
        err = rng.uniform(0.05, 0.2, n) * scale
        parts.append(
            pd.DataFrame(
                {
                    "object_id": f"obj{o:03d}",
                    "band": "b",
                    "survey": "synthetic",
                    "mjd": t,
                    "value": v,
                    "err": err,
                    "kind": kind,
                }
            )
        )
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed)


@pytest.mark.parametrize(("seed", "length"), [(1, None), (2, None), (3, 64)])
def test_every_shared_feature_equals_light_curve(seed: int, length: int | None) -> None:
    # length 64: every curve equally long, the order statistics' reshape path
    pts = _curves(seed, length=length)
    ours = compute_features(pts).set_index("object_id")
    ext = lcf.Extractor(*(e for e, _ in ORACLE))
    cols = [c for _, names in ORACLE for c in names]
    assert len(cols) == len(ext.names)
    checked = 0
    for obj, g in pts.groupby("object_id"):
        g = g.sort_values("mjd", kind="mergesort")
        # light-curve gets times from the first epoch: none of these features depends on the
        # time origin, and its least squares lose up to ~1e-8 of a slope at t ~ 58000 (see
        # test_slope_is_exact_where_light_curve_loses_digits).
        t = g.mjd.to_numpy() - g.mjd.min()
        ref = ext(t, g.value.to_numpy(), g.err.to_numpy(), sorted=True)
        for col, want in zip(cols, ref, strict=True):
            if col is None:
                continue
            got = ours.loc[obj, col]
            assert got == pytest.approx(want, rel=1e-9, abs=1e-300), f"{obj} {col}"
            checked += 1
    assert checked == 120 * 18


def test_known_linear_trend_and_its_error() -> None:
    # m = 18 + 0.002 t exactly, constant errors 0.05: both slopes 0.002, chi2 0,
    # slope sigma = 0.05 / sqrt(sum (t - mean t)^2).
    t = np.arange(100.0)
    pts = pd.DataFrame(
        {
            "object_id": "L",
            "band": "zg",
            "survey": "ztf",
            "mjd": 59000 + t,
            "value": 18 + 0.002 * t,
            "err": 0.05,
            "kind": "mag",
        }
    )
    f = compute_features(pts).iloc[0]
    assert f["slope"] == pytest.approx(0.002, rel=1e-9)
    assert f["linear_fit_slope"] == pytest.approx(0.002, rel=1e-9)
    assert f["linear_fit_reduced_chi2"] == pytest.approx(0.0, abs=1e-20)
    sxx = ((t - t.mean()) ** 2).sum()
    assert f["linear_fit_slope_sigma"] == pytest.approx(0.05 / np.sqrt(sxx), rel=1e-12)


def test_known_percentiles_beyond_std_stetson_and_eta() -> None:
    # values 1..20 in time order: Hazen Q(0.05) = sorted[0.05*20 - 0.5] = 1.5, Q(0.95) = 19.5
    v = np.arange(1.0, 21.0)
    pts = pd.DataFrame(
        {
            "object_id": "P",
            "band": "zr",
            "survey": "ztf",
            "mjd": np.arange(20.0),
            "value": v,
            "err": 1.0,
            "kind": "mag",
        }
    )
    f = compute_features(pts).iloc[0]
    assert f["inter_percentile_range_5"] == pytest.approx(18.0, rel=1e-12)
    assert f["inter_percentile_range_10"] == pytest.approx(16.0, rel=1e-12)
    assert f["inter_percentile_range_20"] == pytest.approx(12.0, rel=1e-12)
    std = v.std(ddof=1)  # 5.916
    assert f["beyond_1_std"] == np.count_nonzero(np.abs(v - 10.5) > std) / 20  # 8 / 20
    assert f["beyond_2_std"] == 0.0
    # successive differences all 1: eta = 19 / (19 var)
    assert f["eta"] == pytest.approx(1 / std**2, rel=1e-12)
    r = v - 10.5
    assert f["stetson_k"] == pytest.approx(np.abs(r).sum() / np.sqrt(20 * (r * r).sum()))


def test_unusable_errors_give_nan_for_weighted_features_only() -> None:
    pts = pd.DataFrame(
        {
            "object_id": "E",
            "band": "zr",
            "survey": "ztf",
            "mjd": [1.0, 2.0, 3.0, 4.0],
            "value": [18.0, 18.2, 18.1, 18.4],
            "err": [0.1, np.nan, 0.1, 0.0],
            "kind": "mag",
        }
    )
    f = compute_features(pts).iloc[0]
    for col in ("stetson_k", "linear_fit_slope", "linear_fit_slope_sigma"):
        assert np.isnan(f[col]), col
    assert np.isfinite(f["eta"]) and np.isfinite(f["slope"])


def test_slope_is_exact_where_light_curve_loses_digits() -> None:
    # obj009 of seed 1: a shallow trend at MJD ~58000. The exact least-squares slope (rational
    # arithmetic) is matched to 1e-14 here; light-curve 0.13.3 on the raw MJDs is 4.5e-9 off.
    from fractions import Fraction

    pts = _curves(1)
    g = pts[pts.object_id == "obj009"].sort_values("mjd")
    t = [Fraction(x) for x in g.mjd]
    v = [Fraction(x) for x in g.value]
    tm, vm = sum(t) / len(t), sum(v) / len(v)
    exact = sum((a - tm) * (b - vm) for a, b in zip(t, v, strict=True)) / sum(
        (a - tm) * (a - tm) for a in t
    )
    ours = compute_features(g).iloc[0]
    assert ours["slope"] == pytest.approx(float(exact), rel=1e-14)
    raw = lcf.LinearTrend()(g.mjd.to_numpy(), g.value.to_numpy(), g.err.to_numpy())[0]
    assert abs(raw / float(exact) - 1) > 1e-10  # the reason the oracle gets shifted times


def test_sample_ztf_alert_light_curves_equal_light_curve() -> None:
    # The real sample packets (detections off negative difference images, as the stage uses).
    from pathlib import Path

    from astropipe.features import points_from_lightcurves
    from astropipe.lightcurve import FLAG_NEGATIVE_DIFF, to_lightcurve_table
    from astropipe.ztf.alerts import decode_packet
    from astropipe.ztf.collector import AlertCollector
    from astropipe.ztf.packets import Packet
    from astropipe.ztf.stage import _alert_lightcurves

    alerts = Path(__file__).resolve().parents[1] / "data" / "sample" / "ztf" / "alerts"
    collector = AlertCollector()
    for path in sorted(p for p in alerts.glob("*.avro") if "schemaless" not in p.name):
        collector.add(decode_packet(Packet(path.name, path.read_bytes())))
    lc = to_lightcurve_table(_alert_lightcurves(collector)).to_pandas()
    lc = lc[~lc.is_upper_limit & ((lc["flags"] & FLAG_NEGATIVE_DIFF) == 0)]
    pts = points_from_lightcurves(lc)
    ours = compute_features(pts, min_points=5).set_index(["object_id", "band"])
    assert len(ours) >= 5
    ext = lcf.Extractor(*(e for e, _ in ORACLE))
    cols = [c for _, names in ORACLE for c in names]
    for (obj, band), row in ours.iterrows():
        g = pts[(pts.object_id == obj) & (pts.band == band)].sort_values("mjd")
        t = g.mjd.to_numpy() - g.mjd.min()
        ref = ext(t, g.value.to_numpy(), g.err.to_numpy(), sorted=True)
        for col, want in zip(cols, ref, strict=True):
            if col is not None:
                assert row[col] == pytest.approx(want, rel=1e-9, abs=1e-300), f"{obj} {col}"
