"""Lomb–Scargle features: a sinusoid of known period is recovered; values stored at 30 bits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.timeseries import LombScargle

from astropipe.features import compute_features
from astropipe.features.extract import ExtractConfig
from astropipe.features.periodogram import PeriodogramConfig, round_significand


def _sinusoid(period: float, *, seed: int = 0, n: int = 200, kind: str = "mag") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(59000, 59300, n))
    y = 18 + 0.3 * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.05, n)
    return pd.DataFrame(
        {
            "object_id": f"P{period}",
            "band": "zg",
            "survey": "ztf",
            "mjd": t,
            "value": y,
            "err": 0.05,
            "kind": kind,
        }
    )


@pytest.mark.parametrize("period", [0.37, 3.7, 27.0])
def test_known_period_is_recovered(period: float) -> None:
    f = compute_features(_sinusoid(period)).iloc[0]
    # within one grid step: d(period) = period^2 * df, df = 1 / (5 * baseline ~ 300 d)
    assert abs(f["ls_period"] - period) < period * period / (5 * 290)
    assert f["ls_power"] > 0.9
    assert f["ls_fap"] < 1e-50


def test_values_equal_astropy_at_the_stated_precision() -> None:
    pts = _sinusoid(3.7, seed=4)
    f = compute_features(pts).iloc[0]
    ls = LombScargle(pts.mjd, pts.value, pts.err)
    freq, power = ls.autopower(minimum_frequency=0.01, maximum_frequency=10.0, samples_per_peak=5)
    best = np.argmax(power)
    fap = ls.false_alarm_probability(power[best], minimum_frequency=0.01, maximum_frequency=10.0)
    assert f["ls_period"] == pytest.approx(1 / freq[best], rel=1e-9)
    assert f["ls_power"] == pytest.approx(power[best], rel=1e-9)
    assert f["ls_fap"] == pytest.approx(fap, rel=1e-9)
    # stored on the 30-bit grid: rounding again changes nothing
    for col in ("ls_period", "ls_power", "ls_fap"):
        assert round_significand(np.array([f[col]]))[0] == f[col]


def test_round_significand_is_exact_rounding() -> None:
    x = np.array([1.0 + 2.0**-40, 3.0, -0.1, 1e-300, np.nan, np.inf])
    r = round_significand(x, bits=30)
    assert r[0] == 1.0 and r[1] == 3.0 and np.isnan(r[4]) and r[5] == np.inf
    assert abs(r[2] / -0.1 - 1) <= 2.0**-30 and abs(r[3] / 1e-300 - 1) <= 2.0**-30


def test_too_few_points_or_disabled_give_nan() -> None:
    short = _sinusoid(3.7, n=8)
    assert np.isnan(compute_features(short).iloc[0]["ls_period"])  # min_points 10
    off = ExtractConfig(periodogram=PeriodogramConfig(enabled=False))
    f = compute_features(_sinusoid(3.7), cfg=off).iloc[0]
    assert np.isnan(f["ls_period"]) and np.isnan(f["ls_fap"])


@pytest.mark.parametrize("fap_method", ["baluev", "davies", "naive"])
def test_the_periodogram_swaps_no_process_global_warning_filters(
    fap_method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches run on threads: warnings.catch_warnings there swapped the process's filters (a
    batch ending restored them under another one, or left "ignore RuntimeWarning" installed).
    numpy's errstate (thread-local) silences the floating-point warnings instead."""
    import warnings

    def no_swaps(*args: object, **kwargs: object) -> None:
        raise AssertionError("warnings.catch_warnings inside a task")

    from astropipe.features.periodogram import lomb_scargle

    pts = pd.concat([_sinusoid(0.37), _sinusoid(27.0, n=12), _sinusoid(3.7, n=5)])
    starts = np.array([0, 200, 212])
    t, y, err = (pts[c].to_numpy(np.float64) for c in ("mjd", "value", "err"))
    cfg = PeriodogramConfig(fap_method=fap_method)
    with warnings.catch_warnings(), monkeypatch.context() as patch:
        warnings.simplefilter("error")  # a floating-point warning let through fails the test
        patch.setattr(warnings, "catch_warnings", no_swaps)
        got = lomb_scargle(t, y, err, starts, cfg=cfg)
    assert np.isfinite(got["ls_period"][:2]).all() and np.isnan(got["ls_period"][2])
