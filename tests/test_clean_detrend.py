"""Savitzky–Golay flattening against lightkurve 2.5.1 (the oracle) and scipy."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import savgol_filter

from astropipe.errors import ConfigError
from astropipe.features.clean import flatten, savgol_smooth
from astropipe.features.clean.savgol import savgol_hat_rows

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "data/sample/tess").glob("*.fits")) + sorted(
    (ROOT / "data/sample/kepler").glob("*.fits")
)
PARAMS = [(101, 2, 3.0, 3), (51, 3, 3.0, 3), (201, 2, 2.5, 5), (11, 1, 3.0, 1)]


@pytest.fixture(scope="module")
def lk():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lightkurve

    return lightkurve


def _read(lk, path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lc = lk.read(str(path))
    flux = lc.flux.value
    flux = flux.filled(np.nan) if hasattr(flux, "filled") else flux
    err = lc.flux_err.value
    err = err.filled(np.nan) if hasattr(err, "filled") else err
    return lc.time.value, np.asarray(flux), np.asarray(err, dtype=np.float64)


@pytest.mark.parametrize("w,p", [(101, 2), (51, 3), (201, 2), (5, 1), (11, 4), (3, 0), (401, 3)])
def test_savgol_equals_scipy(w: int, p: int) -> None:
    x = 1e4 + np.cumsum(np.random.default_rng(w + p).standard_normal(5000))
    np.testing.assert_allclose(
        savgol_smooth(x, window_length=w, polyorder=p), savgol_filter(x, w, p), rtol=1e-11
    )


def test_savgol_exact_on_polynomials() -> None:
    # A quadratic is reproduced by a polyorder-2 filter everywhere, edges included.
    t = np.arange(300.0)
    x = 3.0 + 0.5 * t - 0.001 * t * t
    np.testing.assert_allclose(savgol_smooth(x, window_length=101, polyorder=2), x, rtol=1e-13)
    # Rows sum to one (the filter keeps a constant).
    np.testing.assert_allclose(savgol_hat_rows(101, 2).sum(axis=1), 1.0, rtol=1e-14)


def test_savgol_bad_window() -> None:
    with pytest.raises(ConfigError, match="window_length=100"):
        savgol_hat_rows(100, 2)
    with pytest.raises(ConfigError, match="polyorder=5"):
        savgol_hat_rows(5, 5)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name[:40])
def test_flatten_equals_lightkurve_float64(lk, path: Path) -> None:
    """Same float64 flux: equal to 1e-10 relative, NaNs in the same places, same trend."""
    t, f, e = _read(lk, path)
    lc64 = lk.LightCurve(time=t, flux=f.astype(np.float64), flux_err=e)
    for w, p, s, n in PARAMS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref, trend = lc64.flatten(
                window_length=w, polyorder=p, sigma=s, niters=n, return_trend=True
            )
        res = flatten(t, f.astype(np.float64), window_length=w, polyorder=p, sigma=s, niters=n)
        a = np.asarray(ref.flux.value, dtype=np.float64)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(res.flat))
        np.testing.assert_allclose(res.flat, a, rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(res.trend, np.asarray(trend.flux.value), rtol=1e-10)


def test_flatten_with_mask_equals_lightkurve(lk) -> None:
    t, f, e = _read(lk, SAMPLES[0])
    f = f.astype(np.float64)
    mask = np.zeros(len(t), dtype=bool)
    mask[3000:3200] = True
    lc64 = lk.LightCurve(time=t, flux=f, flux_err=e)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lc64.flatten(window_length=101, mask=mask)
    res = flatten(t, f, window_length=101, mask=mask)
    np.testing.assert_allclose(res.flat, np.asarray(ref.flux.value), rtol=1e-10, equal_nan=True)


def test_flatten_on_lightkurves_float32_flux(lk) -> None:
    """lightkurve fits SPOC's float32 flux in float32 (scipy keeps the dtype, and its edge
    polyfit solves in float32); astropipe fits in float64, so the two agree to float32's
    resolution (~6e-8), not to 1e-10."""
    t, f, _ = _read(lk, SAMPLES[0])
    assert f.dtype.itemsize == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lc = lk.read(str(SAMPLES[0]))
        ref = lc.flatten()
    a = ref.flux.value
    a = np.asarray(a.filled(np.nan) if hasattr(a, "filled") else a, dtype=np.float64)
    res = flatten(t, f)
    np.testing.assert_allclose(res.flat, a, rtol=2e-7, equal_nan=True)


def test_flatten_break_tolerance_none_and_short_pieces() -> None:
    t = np.arange(60.0) * 0.02
    f = 1.0 + 0.01 * t
    res = flatten(t, f, window_length=101, break_tolerance=None)  # shorter than the window
    np.testing.assert_allclose(res.trend, np.median(f))


def _no_filter_swaps(*args: object, **kwargs: object) -> None:
    raise AssertionError("warnings.catch_warnings inside a task (process-global filters)")


def test_biweight_empty_windows_are_nan_without_touching_the_warning_filters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows with no usable point give NaN with no all-NaN warning to silence: the old
    ``warnings.catch_warnings`` swapped process-global filters under the batches on threads."""
    from astropipe.features.clean.detrend import biweight_trend

    rng = np.random.default_rng(3)
    time = np.sort(np.concatenate([rng.uniform(0, 2, 400), rng.uniform(5, 7, 400)]))
    flux = 1.0 + 0.01 * rng.standard_normal(len(time))
    flux[(time > 5.5) & (time < 6.0)] = np.nan  # windows of nothing but NaN
    mask = (time > 1.0) & (time < 1.6)  # and windows of nothing but masked points
    filters = list(warnings.filters)
    with warnings.catch_warnings(), monkeypatch.context() as patch:
        warnings.simplefilter("error")
        patch.setattr(warnings, "catch_warnings", _no_filter_swaps)
        trend = biweight_trend(time, flux, window_days=0.2, mask=mask, chunk=97)
    assert warnings.filters == filters
    empty = np.array(
        [not np.any(np.isfinite(flux) & ~mask & (np.abs(time - t) <= 0.1)) for t in time]
    )
    assert empty.any() and (~empty).any()
    assert np.array_equal(np.isnan(trend), empty)
    from astropipe.features.clean.detrend import _row_nanmedian

    for width in (30, 700):  # numpy's two methods (rows shorter than 600, and not)
        win = np.where(rng.random((50, width)) < 0.5, rng.standard_normal((50, width)), np.nan)
        win[7] = np.nan
        with warnings.catch_warnings():  # the same bytes as numpy's nanmedian over every row
            warnings.simplefilter("ignore", RuntimeWarning)
            whole = np.nanmedian(win, axis=1)
        assert np.array_equal(_row_nanmedian(win, np.isfinite(win)), whole, equal_nan=True)
