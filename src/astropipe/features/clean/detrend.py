"""Baseline removal: lightkurve's ``flatten`` (Savitzky–Golay) and wotan's time-windowed biweight.

:func:`flatten` is ``lightkurve.LightCurve.flatten`` step for step — the initial sigma mask
around the median, the split at gaps of ``break_tolerance`` × the median cadence, the
Savitzky–Golay trend of each piece (the median for a piece shorter than the window), the
iterative sigma mask on the residuals, the linear interpolation (and extrapolation) of the trend
to every time, ``flux / trend`` — with the Savitzky–Golay fit of :mod:`.savgol`, whose
coefficients are exact, so the result does not depend on the BLAS, LAPACK or CPU
(``tests/test_clean_detrend.py`` compares with lightkurve 2.5.1 to 1e-10 relative).

:func:`biweight_trend` is the robust location of Tukey's biweight in a sliding time window (the
method wotan recommends for transit searches; Hippke et al. 2019, AJ 158, 143): for each point,
the points within ``window_days / 2`` of it, the median as a start, then ``iterations`` updates
``M ← Σ wᵢxᵢ / Σ wᵢ`` with ``wᵢ = (1 − uᵢ²)²`` for ``|uᵢ| < 1``, ``uᵢ = (xᵢ − M) / (c · MAD)``.
Only ``+ − × ÷``, medians and fixed-order sums, so its bytes follow IEEE 754 too; the trend is
still rounded to :data:`TREND_SIGNIFICAND_BITS` bits (about 1e-9 relative), the stated
precision of a stored biweight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astropipe.features.clean.precision import round_significand
from astropipe.features.clean.savgol import savgol_segments

__all__ = ["FlattenResult", "flatten", "biweight_trend", "TREND_SIGNIFICAND_BITS"]

#: Significand bits kept of a biweight trend (2⁻³⁰ ≈ 9.3e-10 relative).
TREND_SIGNIFICAND_BITS = 30


@dataclass(frozen=True)
class FlattenResult:
    """What :func:`flatten` returns: ``flux / trend``, the trend, and the fit mask."""

    flat: np.ndarray
    trend: np.ndarray
    used: np.ndarray  # True where the point entered the final trend fit


def _interp_extrapolate(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """``scipy.interpolate.interp1d(x, y, fill_value="extrapolate")(x_new)``, same formula."""
    if len(x) == 1:
        return np.full(len(x_new), y[0])
    idx = np.searchsorted(x, x_new).clip(1, len(x) - 1)
    lo = idx - 1
    x_lo, x_hi, y_lo, y_hi = x[lo], x[idx], y[lo], y[idx]
    slope = (y_hi - y_lo) / (x_hi - x_lo)
    return slope * (x_new - x_lo) + y_lo


def flatten(
    time: np.ndarray,
    flux: np.ndarray,
    *,
    window_length: int = 101,
    polyorder: int = 2,
    sigma: float = 3.0,
    niters: int = 3,
    break_tolerance: float | None = 5.0,
    mask: np.ndarray | None = None,
) -> FlattenResult:
    """``lightkurve.LightCurve.flatten`` on arrays, deterministic.

    Parameters
    ----------
    time, flux
        Sorted times (d) and fluxes; NaN fluxes are left out of the fit.
    window_length, polyorder, sigma, niters, break_tolerance
        As in lightkurve (``break_tolerance=None`` never splits).
    mask
        True where a point must stay out of the fit (a known transit); its trend is
        interpolated.

    Returns
    -------
    FlattenResult
        ``flat = flux / trend``, ``trend`` at every time, ``used``.
    """
    time = np.asarray(time, dtype=np.float64)
    raw = np.asarray(flux)
    raw = raw.astype(raw.dtype.newbyteorder("="), copy=False)
    n = len(time)
    keep = np.ones(n, dtype=bool) if mask is None else ~np.asarray(mask, dtype=bool)
    with np.errstate(invalid="ignore"):
        keep &= np.isfinite(raw)
        # In the input's own precision, as lightkurve (a float32 SPOC flux gives a float32
        # median and standard deviation here, and only here).
        keep &= np.nan_to_num(np.abs(raw - np.nanmedian(raw))) <= np.nanstd(raw) * sigma
    flux = raw.astype(np.float64)
    if polyorder >= window_length:
        polyorder = window_length - 1
    tol = np.nan if break_tolerance is None else float(break_tolerance)
    trend = np.full(n, np.nan)
    for _ in range(niters):
        tk, fk = time[keep], flux[keep]
        if len(tk) == 0:
            break
        dt = tk[1:] - tk[:-1]
        with np.errstate(invalid="ignore"):
            cut = np.flatnonzero(dt > tol * np.nanmedian(dt)) + 1 if len(dt) else np.zeros(0, int)
        low = np.append([0], cut)
        high = np.append(cut, len(tk))
        size = high - low
        short = (window_length > size) | (size < tol)
        # Always float64: scipy would keep a float32 input in float32 (and fit its edges with
        # a float32 least-squares solve), a precision not worth copying. All long pieces in
        # one pass (bit-identical to one piece at a time).
        sig = savgol_segments(
            fk, low[~short], high[~short], window_length=window_length, polyorder=polyorder
        )
        if short.any():
            _piece_medians(fk, low[short], high[short], out=sig)
        resid = fk - sig
        # lightkurve adds 1e-14 so that numerical noise alone is never an outlier.
        good = np.nan_to_num(np.abs(resid)) < (np.nanstd(resid) * sigma + 1e-14)
        trend = _interp_extrapolate(tk[good], sig[good], time)
        keep[keep] &= good
    with np.errstate(invalid="ignore", divide="ignore"):
        flat = flux / trend
    return FlattenResult(flat=flat, trend=trend, used=keep)


def _piece_medians(x: np.ndarray, low: np.ndarray, high: np.ndarray, *, out: np.ndarray) -> None:
    """``out[lo:hi] = median(x[lo:hi])`` for every piece, in one sort.

    Same value as ``np.median`` (and lightkurve's ``nanmedian``: the values are finite): the
    middle value, or ``(a + b) / 2`` of the two middle ones.
    """
    sizes = high - low
    piece = np.repeat(np.arange(len(low)), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    idx = np.repeat(low, sizes) + (np.arange(int(sizes.sum())) - np.repeat(first, sizes))
    vals = x[idx]
    ordered = vals[np.lexsort((vals, piece))]
    med = (ordered[first + (sizes - 1) // 2] + ordered[first + sizes // 2]) / 2.0
    out[idx] = np.repeat(med, sizes)


def _window_bounds(time: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    lo = np.searchsorted(time, time - half, side="left")
    hi = np.searchsorted(time, time + half, side="right")
    return lo, hi


def biweight_trend(
    time: np.ndarray,
    flux: np.ndarray,
    *,
    window_days: float = 0.5,
    cval: float = 5.0,
    iterations: int = 5,
    mask: np.ndarray | None = None,
    chunk: int = 2048,
) -> np.ndarray:
    """Time-windowed Tukey biweight location of ``flux`` at every time (wotan's ``biweight``).

    Parameters
    ----------
    time, flux
        Sorted times (d) and fluxes.
    window_days
        Full width of the window (wotan's ``window_length``).
    cval
        Tuning constant ``c`` in units of the window's MAD (wotan: 5).
    iterations
        Fixed number of location updates (wotan iterates to a tolerance; a fixed count keeps
        every machine on the same path).
    mask
        True where a point stays out of every window (a known transit).
    chunk
        Points per block of the vectorised computation (memory only, not the result).

    Returns
    -------
    numpy.ndarray
        The trend, rounded to :data:`TREND_SIGNIFICAND_BITS` significand bits; NaN where a
        window holds no usable point.
    """
    time = np.asarray(time, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    n = len(time)
    use = np.isfinite(flux)
    if mask is not None:
        use &= ~np.asarray(mask, dtype=bool)
    tu, fu = time[use], flux[use]
    lo, hi = _window_bounds(tu, window_days / 2) if len(tu) else (np.zeros(0, int),) * 2
    # The window of each requested time, over the usable points.
    lo = np.searchsorted(tu, time - window_days / 2, side="left")
    hi = np.searchsorted(tu, time + window_days / 2, side="right")
    out = np.full(n, np.nan)
    width = int((hi - lo).max()) if n else 0
    if width == 0:
        return out
    offsets = np.arange(width)
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        idx = lo[sl, None] + offsets[None, :]
        valid = idx < hi[sl, None]
        win = np.where(valid, fu[np.minimum(idx, len(fu) - 1)], np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            loc = _row_nanmedian(win, valid)
            mad = _row_nanmedian(np.abs(win - loc[:, None]), valid)
            scale = cval * mad
            for _ in range(iterations):
                u = (win - loc[:, None]) / scale[:, None]
                w1 = 1.0 - u * u
                w = np.where(valid & (np.abs(u) < 1.0), w1 * w1, 0.0)
                num = np.sum(np.where(w > 0, w * win, 0.0), axis=1)
                den = np.sum(w, axis=1)
                loc = np.where(den > 0, num / den, loc)
        out[sl] = loc
    return round_significand(out, bits=TREND_SIGNIFICAND_BITS)


def _row_nanmedian(win: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``np.nanmedian(win, axis=1)``, NaN for the rows without a valid point, computed over the
    others only: numpy warns of all-NaN slices through the process-global warning filters,
    which batches on threads cannot swap safely. Each row's median is its own (the same
    bytes); the method numpy picks depends on the row length only."""
    some = valid.any(axis=1)
    if some.all():  # the usual chunk: no copy
        return np.nanmedian(win, axis=1)
    out = np.full(len(win), np.nan)
    if some.any():
        out[some] = np.nanmedian(win[some], axis=1)
    return out
