"""Vectorised per-group light-curve statistics.

Rows come sorted by ``(object_id, band, mjd)``; every group is then a contiguous slice, sums
over groups are ``np.add.reduceat`` calls over whole columns, and order statistics (median,
MAD, percentiles) come from sorting the values of equally long groups together as the rows of
one 2-D array (groups are bucketed by length, padded with +inf, so a bucket wastes at most half
its cells). No Python loop runs per group. Definitions follow the ``light-curve`` package
(Malanchev et al. 2021, MNRAS 502, 5147), which the tests use as the reference:

- ``std``: sample standard deviation (ddof = 1);
- ``skew``: adjusted Fisher–Pearson G1; ``kurtosis``: excess kurtosis G2 (bias-corrected);
- ``amplitude``: half the peak-to-peak range, (max − min) / 2;
- ``mad``: median absolute deviation from the median;
- ``slope``: ordinary least-squares slope of the value against time (light-curve's
  ``LinearTrend``);
- ``beyond_1_std``, ``beyond_2_std``: fraction of points with ``|x − mean| > n · std``;
- ``inter_percentile_range_{5,10,20}``: ``Q(1 − q) − Q(q)`` for q = 0.05, 0.10, 0.20, with
  light-curve's quantile: the Hazen estimator (position ``q·N − ½`` in the sorted values,
  linear interpolation, clamped to the ends) with the position computed in float32, as
  light-curve does;
- ``stetson_k``: ``Σ|rᵢ| / sqrt(N Σ rᵢ²)``, ``rᵢ = (xᵢ − x̄_w) / σᵢ`` around the
  inverse-variance weighted mean;
- ``eta``: von Neumann ratio ``Σ (x_{i+1} − x_i)² / ((N − 1) · var)`` in time order;
- ``linear_fit_slope``, ``linear_fit_slope_sigma``, ``linear_fit_reduced_chi2``: weighted
  (1/σ²) least squares as light-curve's ``LinearFit``: slope, ``sqrt(1 / Σ wᵢ (tᵢ − t̄_w)²)``
  and χ² / (N − 2);
- peak: the brightest point (smallest magnitude or largest flux; earliest on ties);
  ``rise_time`` = ``mjd_peak − mjd_first``, ``decay_time`` = ``mjd_last − mjd_peak``;
  ``rise_rate``: least-squares slope of the brightness (−mag or +flux) over the points up to
  and including the peak, so positive while brightening; ``decay_rate``: −(that slope) over
  the points from the peak on, positive while fading. Per day, NaN with fewer than two points.

Error-weighted features (``stetson_k``, ``linear_fit_*``) are NaN for a group with any error
that is not finite and positive. Every number comes from ``+ − × ÷ sqrt``, comparisons and
sorts in a fixed order, so its bytes do not depend on the CPU (docs/reproducibility.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["FEATURE_COLUMNS", "PERCENTILE_RANGES", "group_statistics", "group_slices"]

#: Quantiles q of the inter-percentile ranges Q(1 − q) − Q(q) (light-curve's
#: ``InterPercentileRange(q)``), and the integer percent naming each column.
PERCENTILE_RANGES = ((0.05, 5), (0.10, 10), (0.20, 20))

FEATURE_COLUMNS = (
    "n_obs",
    "time_span",
    "mjd_first",
    "mjd_last",
    "mean",
    "median",
    "std",
    "skew",
    "kurtosis",
    "amplitude",
    "mad",
    "slope",
    "mjd_peak",
    "mag_peak",
    "rise_rate",
    "decay_rate",
    # added with issue 10
    "flux_peak",
    "rise_time",
    "decay_time",
    "beyond_1_std",
    "beyond_2_std",
    *(f"inter_percentile_range_{p}" for _, p in PERCENTILE_RANGES),
    "stetson_k",
    "eta",
    "linear_fit_slope",
    "linear_fit_slope_sigma",
    "linear_fit_reduced_chi2",
)


def group_slices(keys: pd.DataFrame) -> np.ndarray:
    """Start index of each run of equal rows in sorted ``keys`` (first row always starts one)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.intp)
    change = np.zeros(len(keys), dtype=bool)
    change[0] = True
    for col in keys.columns:
        values = keys[col].to_numpy()
        change[1:] |= values[1:] != values[:-1]
    return np.flatnonzero(change)


def _segment_sum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(x, starts) if len(x) else np.zeros(0)


def _ols_slope(
    t: np.ndarray, y: np.ndarray, w: np.ndarray | None, starts: np.ndarray, ni: np.ndarray
) -> np.ndarray:
    """Per-group OLS slope of y on t over rows with weight w (0/1; None: all); NaN below two.

    ``w = None`` skips the products by one, which are exact, so the result is the same as with
    ``w = 1`` everywhere.
    """

    def per_row(x: np.ndarray) -> np.ndarray:
        return np.repeat(x, ni)

    if w is None:
        n = ni.astype(np.float64)
        st = _segment_sum(t, starts)
        sy = _segment_sum(y, starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            dt = t - per_row(st / n)
            sxy = _segment_sum(dt * (y - per_row(sy / n)), starts)
            sxx = _segment_sum(dt * dt, starts)
            slope = sxy / sxx
        slope[(n < 2) | ~(sxx > 0)] = np.nan
        return slope
    n = _segment_sum(w, starts)
    st = _segment_sum(w * t, starts)
    sy = _segment_sum(w * y, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = st / n
        ym = sy / n
        dt = (t - per_row(tm)) * w
        sxy = _segment_sum(dt * (y - per_row(ym)), starts)
        sxx = _segment_sum(dt * dt, starts)
        slope = sxy / sxx
    slope[(n < 2) | ~(sxx > 0)] = np.nan
    return slope


class _SortedGroups:
    """The values of each group sorted, held as padded 2-D blocks of similar-length groups.

    Groups whose lengths share ``ceil(log2(n))`` form one block of shape
    ``(groups, longest)``, padded with +inf (values are finite), sorted along rows.
    """

    def __init__(self, n: np.ndarray) -> None:
        self.n = n
        # (members, index, valid) of a padded block, or (members, slice, None) when the block's
        # groups are consecutive and equally long, so a reshape of the column is the block.
        self.blocks: list[tuple[np.ndarray, np.ndarray | slice, np.ndarray | None]] = []
        if not len(n):
            return
        starts = np.concatenate([[0], np.cumsum(n)[:-1]])
        # bit_length of (n - 1) = ceil(log2 n); exact integer arithmetic.
        level = np.frexp((n - 1).astype(np.float64))[1]
        for lev in np.unique(level):
            members = np.flatnonzero(level == lev)
            width = int(n[members].max())
            first, last = int(members[0]), int(members[-1])
            if last - first + 1 == len(members) and (n[members] == width).all():
                rows = slice(int(starts[first]), int(starts[first]) + len(members) * width)
                self.blocks.append((members, rows, None))
                continue
            cols = np.arange(width)
            valid = cols[None, :] < n[members][:, None]
            index = np.where(valid, starts[members][:, None] + cols[None, :], 0)
            self.blocks.append((members, index, valid))

    def sort(self, x: np.ndarray) -> list[np.ndarray]:
        """Each block's values of ``x``, sorted along rows (padding +inf at the right)."""
        out = []
        for members, index, valid in self.blocks:
            if valid is None:
                block = x[index].reshape(len(members), -1)
            else:
                block = np.where(valid, x[index], np.inf)
            out.append(np.sort(block, axis=1))
        return out

    def take(self, sorted_blocks: list[np.ndarray], pos: np.ndarray) -> np.ndarray:
        """Per group, the sorted value at integer position ``pos[group]``."""
        out = np.empty(len(self.n))
        for (members, _, _), s in zip(self.blocks, sorted_blocks, strict=True):
            out[members] = s[np.arange(len(members)), pos[members]]
        return out

    def median(self, sorted_blocks: list[np.ndarray]) -> np.ndarray:
        """Median: the middle value, or the mean of the two middle values (as numpy/pandas)."""
        hi = self.n // 2
        lo = (self.n - 1) // 2
        return (self.take(sorted_blocks, lo) + self.take(sorted_blocks, hi)) / 2

    def quantile_hazen(self, sorted_blocks: list[np.ndarray], q: np.float32) -> np.ndarray:
        """light-curve's ``ppf(q)``: Hazen position ``q·N − ½`` in float32, linear interpolation."""
        x = q * self.n.astype(np.float32) - np.float32(0.5)
        floor = np.floor(x)
        i = np.clip(floor, 0, self.n - 1).astype(np.intp)
        j = np.minimum(i + 1, self.n - 1)
        frac = (x - floor).astype(np.float64)
        a = self.take(sorted_blocks, i)
        b = self.take(sorted_blocks, j)
        out = a + frac * (b - a)
        out = np.where(x < 0, a, out)
        return np.where(x >= self.n - 1, self.take(sorted_blocks, self.n - 1), out)


def group_statistics(
    t: np.ndarray, m: np.ndarray, err: np.ndarray, is_flux: np.ndarray, starts: np.ndarray
) -> dict[str, np.ndarray]:
    """Compute :data:`FEATURE_COLUMNS` for every group of sorted points.

    Parameters
    ----------
    t, m, err
        Time, value and error of every point, grouped (each group a contiguous run starting at
        ``starts``) and sorted by time within a group; values finite.
    is_flux
        Per group: True for fluxes (brighter = larger), False for magnitudes.
    starts
        Index of each group's first point, increasing, starting at 0.

    Returns
    -------
    dict
        :data:`FEATURE_COLUMNS` → one value per group.
    """
    ni = np.diff(np.append(starts, len(t))).astype(np.intp)
    n = ni.astype(np.float64)
    ends = starts + ni - 1

    def per_row(x: np.ndarray) -> np.ndarray:
        return np.repeat(x, ni)

    with np.errstate(invalid="ignore", divide="ignore"):
        mean = _segment_sum(m, starts) / n
    # Powers are written as products: numpy's ``pow`` (and exp/log) follow the CPU's SIMD
    # dispatch (AVX-512 uses other kernels than AVX2), while + - * / sqrt are fixed by
    # IEEE 754, so these bytes are the same on every machine (tests/test_simd_levels.py).
    d = m - per_row(mean)
    d2 = d * d
    m2 = _segment_sum(d2, starts)
    m3 = _segment_sum(d2 * d, starts)
    m4 = _segment_sum(d2 * d2, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = m2 / (n - 1)
        std = np.sqrt(var)
        skew = n / ((n - 1) * (n - 2)) * m3 / (std * std * std)
        kurt = n * (n + 1) / ((n - 1) * (n - 2) * (n - 3)) * m4 / (var * var) - 3 * (
            (n - 1) * (n - 1)
        ) / ((n - 2) * (n - 3))
    skew[n < 3] = np.nan
    kurt[n < 4] = np.nan

    absd = np.abs(d)
    beyond = {
        k: _segment_sum((absd > k * per_row(std)).astype(np.float64), starts) / n for k in (1, 2)
    }

    sg = _SortedGroups(ni)
    sorted_m = sg.sort(m)
    median = sg.median(sorted_m)
    mad = sg.median(sg.sort(np.abs(m - per_row(median))))
    ipr = {}
    for q, p in PERCENTILE_RANGES:
        q32 = np.float32(q)
        ipr[p] = sg.quantile_hazen(sorted_m, np.float32(1) - q32) - sg.quantile_hazen(sorted_m, q32)
    mmax = np.maximum.reduceat(m, starts) if len(m) else np.zeros(0)
    mmin = np.minimum.reduceat(m, starts) if len(m) else np.zeros(0)

    # von Neumann: successive differences within a group (the pair across a boundary is
    # zeroed, exactly, before the sum).
    dm = np.zeros_like(m)
    dm[1:] = m[1:] - m[:-1]
    dm[starts] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        eta = _segment_sum(dm * dm, starts) / ((n - 1) * var)

    # Error-weighted features: w = 1/σ²; a group with any unusable error gets NaN.
    # An unusable error (NaN, <= 0, inf) shows in the group's minimum or maximum (NaN
    # propagates through both), two passes instead of a per-point test.
    if len(err):
        emin, emax = np.minimum.reduceat(err, starts), np.maximum.reduceat(err, starts)
        bad_group = ~((emin > 0) & np.isfinite(emax))
    else:
        bad_group = np.zeros(0, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # One division per point: the rest are products (cheaper, and as exact).
        inv_err = 1.0 / err
        w = inv_err * inv_err
        wsum = _segment_sum(w, starts)
        mw = _segment_sum(w * m, starts) / wsum
        dm = m - per_row(mw)
        r = dm * inv_err
        chi2_mean = _segment_sum(r * r, starts)
        stetson = _segment_sum(np.abs(r), starts) / np.sqrt(n * chi2_mean)
        tw = _segment_sum(w * t, starts) / wsum
        dt = t - per_row(tw)
        wdt = w * dt
        stt = _segment_sum(wdt * dt, starts)
        lf_slope = _segment_sum(wdt * dm, starts) / stt
        resid = dm - per_row(lf_slope) * dt
        lf_chi2 = _segment_sum(w * (resid * resid), starts) / (n - 2)
        lf_sigma = np.sqrt(1.0 / stt)
    for arr in (stetson, lf_slope, lf_chi2, lf_sigma):
        arr[bad_group] = np.nan
    for arr in (lf_slope, lf_chi2, lf_sigma):
        arr[n < 3] = np.nan

    # Brightest point = smallest magnitude or largest flux; ties go to the earliest epoch.
    # Work with the faintness f = +mag or -flux (the magnitudes themselves, bit for bit, for a
    # magnitude group): the peak is the smallest f, rise_rate = -(slope of f) up to the peak
    # (positive while brightening), decay_rate = slope of f from the peak on (positive while
    # fading), whatever the kind.
    faint = np.where(per_row(is_flux), -m, m) if is_flux.any() else m
    fmin = np.minimum.reduceat(faint, starts) if len(faint) else np.zeros(0)
    rows = np.arange(len(faint))
    peak_idx = (
        np.minimum.reduceat(np.where(faint == per_row(fmin), rows, len(faint)), starts)
        if len(faint)
        else starts
    )
    t_peak = t[peak_idx]
    before = (t <= per_row(t_peak)).astype(np.float64)
    after = (t >= per_row(t_peak)).astype(np.float64)
    peak_value = m[peak_idx]

    cols: dict[str, np.ndarray] = {
        "n_obs": ni.astype(np.int64),
        "time_span": t[ends] - t[starts],
        "mjd_first": t[starts],
        "mjd_last": t[ends],
        "mean": mean,
        "median": median,
        "std": std,
        "skew": skew,
        "kurtosis": kurt,
        "amplitude": (mmax - mmin) / 2,
        "mad": mad,
        "slope": _ols_slope(t, m, None, starts, ni),
        "mjd_peak": t_peak,
        "mag_peak": np.where(is_flux, np.nan, peak_value),
        "rise_rate": -_ols_slope(t, faint, before, starts, ni),
        "decay_rate": _ols_slope(t, faint, after, starts, ni),
        "flux_peak": np.where(is_flux, peak_value, np.nan),
        "rise_time": t_peak - t[starts],
        "decay_time": t[ends] - t_peak,
        "beyond_1_std": beyond[1],
        "beyond_2_std": beyond[2],
        **{f"inter_percentile_range_{p}": ipr[p] for _, p in PERCENTILE_RANGES},
        "stetson_k": stetson,
        "eta": eta,
        "linear_fit_slope": lf_slope,
        "linear_fit_slope_sigma": lf_sigma,
        "linear_fit_reduced_chi2": lf_chi2,
    }
    return cols
