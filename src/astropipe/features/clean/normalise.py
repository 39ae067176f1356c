"""Normalisation of one light curve: the seven methods of the data-management guide.

========== ==========================================
method     result
========== ==========================================
median     x / median(x)  (lightkurve's ``normalize``)
mean       x / mean(x)
robust     (x − median) / (P95 − P5)
unity      x / max(|x|)  (largest magnitude becomes 1)
minmax     (x − min) / (max − min)
zscore     (x − mean) / std  (population std)
quantile   (x − median) / MAD
========== ==========================================

Percentiles use linear interpolation; every method is ``+ − × ÷ sqrt``, medians and sorts.
A zero or non-finite scale leaves the values NaN rather than infinite.
"""

from __future__ import annotations

import numpy as np

from astropipe.errors import ConfigError

__all__ = ["normalise", "NORMALISE_METHODS"]

NORMALISE_METHODS = ("median", "mean", "robust", "unity", "minmax", "zscore", "quantile")


def _params(x: np.ndarray, method: str) -> tuple[float, float]:
    """(offset, scale) with result = (x − offset) / scale."""
    if method == "median":
        return 0.0, float(np.median(x))
    if method == "mean":
        return 0.0, float(np.mean(x))
    if method == "robust":
        p5, p95 = np.percentile(x, [5.0, 95.0])
        return float(np.median(x)), float(p95 - p5)
    if method == "unity":
        return 0.0, float(np.max(np.abs(x)))
    if method == "minmax":
        lo, hi = float(np.min(x)), float(np.max(x))
        return lo, hi - lo
    if method == "zscore":
        return float(np.mean(x)), float(np.std(x))
    if method == "quantile":
        med = float(np.median(x))
        return med, float(np.median(np.abs(x - med)))
    raise ConfigError(
        f"normalise.method={method!r} is not valid; use one of {['none', *NORMALISE_METHODS]}."
    )


def normalise(
    x: np.ndarray, err: np.ndarray | None = None, *, method: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalise ``x`` (finite values) and scale ``err`` alike.

    Returns
    -------
    (values, errors)
        ``errors`` is ``err / |scale|`` (None when ``err`` is None).
    """
    x = np.asarray(x, dtype=np.float64)
    if method == "none" or len(x) == 0:
        return x, err
    offset, scale = _params(x, method)
    if not (np.isfinite(scale) and scale != 0):
        nan = np.full(len(x), np.nan)
        return nan, None if err is None else nan.copy()
    out = (x - offset) / scale
    return out, None if err is None else np.asarray(err, dtype=np.float64) / abs(scale)
