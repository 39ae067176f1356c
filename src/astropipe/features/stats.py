"""Vectorised per-group light-curve statistics.

Rows are sorted by ``(object_id, band, mjd)`` once; every group is then a contiguous slice, and
sums over groups are ``np.add.reduceat`` calls over whole columns, so the cost is a few passes
over the data whatever the number of groups. Definitions follow the ``light-curve`` package
(Malanchev et al. 2021, MNRAS 502, 5147), which the tests use as the reference:

- ``std``: sample standard deviation (ddof = 1);
- ``skew``: adjusted Fisher–Pearson G1; ``kurtosis``: excess kurtosis G2 (bias-corrected);
- ``amplitude``: half the peak-to-peak range, (max − min) / 2;
- ``mad``: median absolute deviation from the median;
- ``slope``: ordinary least-squares slope of magnitude against time (mag/day);
- ``rise_rate``: −(OLS slope) of the points up to and including the brightest one, so a
  brightening source has a positive rate; ``decay_rate``: OLS slope of the points from the
  brightest one on (positive while fading). Both mag/day, NaN with fewer than two points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["FEATURE_COLUMNS", "group_statistics", "group_slices"]

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


def _ols_slope(t: np.ndarray, y: np.ndarray, w: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per-group OLS slope of y on t over rows with weight w (0/1); NaN below two points."""
    n = _segment_sum(w, starts)
    st = _segment_sum(w * t, starts)
    sy = _segment_sum(w * y, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = st / n
        ym = sy / n
        idx = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(t))))
        dt = (t - tm[idx]) * w
        sxy = _segment_sum(dt * (y - ym[idx]), starts)
        sxx = _segment_sum(dt * dt, starts)
        slope = sxy / sxx
    slope[(n < 2) | ~(sxx > 0)] = np.nan
    return slope


def group_statistics(df: pd.DataFrame, *, min_points: int = 3) -> pd.DataFrame:
    """Compute :data:`FEATURE_COLUMNS` for every ``(object_id, band)`` of sorted points.

    Parameters
    ----------
    df
        Points (``object_id, band, mjd, value, kind``) sorted by ``(object_id, band, mjd)``,
        finite values only (see :func:`astropipe.features.extract.compute_features`).
    min_points
        Groups with fewer points are dropped.

    Returns
    -------
    pandas.DataFrame
        One row per group, sorted by ``(object_id, band)``; ``object_id``, ``band`` and
        :data:`FEATURE_COLUMNS`.
    """
    starts = group_slices(df[["object_id", "band"]])
    n = np.diff(np.append(starts, len(df)))
    keep_groups = n >= min_points
    keep_rows = np.repeat(keep_groups, n)
    df = df[keep_rows].reset_index(drop=True)
    starts = group_slices(df[["object_id", "band"]])
    n = np.diff(np.append(starts, len(df))).astype(np.float64)
    gid = np.repeat(np.arange(len(starts)), n.astype(np.intp))
    t = df["mjd"].to_numpy(np.float64)
    m = df["value"].to_numpy(np.float64)
    is_flux = (df["kind"].to_numpy() == "flux")[starts] if len(df) else np.zeros(0, bool)

    mean = _segment_sum(m, starts) / n if len(m) else np.zeros(0)
    # Powers are written as products: numpy's ``pow`` (and exp/log) follow the CPU's SIMD
    # dispatch (AVX-512 uses other kernels than AVX2), while + - * / sqrt are fixed by
    # IEEE 754, so these bytes are the same on every machine (tests/test_simd_levels.py).
    d = m - mean[gid]
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

    grouped = pd.Series(m).groupby(gid, sort=True)
    median = grouped.median().to_numpy()
    mad = pd.Series(np.abs(m - median[gid])).groupby(gid, sort=True).median().to_numpy()
    mmax = np.maximum.reduceat(m, starts) if len(m) else np.zeros(0)
    mmin = np.minimum.reduceat(m, starts) if len(m) else np.zeros(0)
    ends = np.append(starts[1:], len(m)) - 1

    # Brightest point = smallest magnitude or largest flux; ties go to the earliest epoch.
    # Brightness b = -mag or +flux, so rates below are positive while brightening (rise) and
    # fading (decay) whatever the kind.
    sign = np.where(is_flux, 1.0, -1.0)
    b = m * sign[gid]
    peak_idx = pd.Series(b).groupby(gid, sort=True).idxmax().to_numpy() if len(m) else starts
    t_peak = t[peak_idx]
    ones = np.ones_like(t)
    before = (t <= t_peak[gid]).astype(np.float64)
    after = (t >= t_peak[gid]).astype(np.float64)

    out = pd.DataFrame(
        {
            "object_id": df["object_id"].to_numpy()[starts],
            "band": df["band"].to_numpy()[starts],
            "n_obs": n.astype(np.int64),
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
            "slope": _ols_slope(t, m, ones, starts),
            "mjd_peak": t_peak,
            "mag_peak": m[peak_idx],
            "rise_rate": _ols_slope(t, b, before, starts),
            "decay_rate": -_ols_slope(t, b, after, starts),
        }
    )
    return out
