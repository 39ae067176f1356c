"""Outlier masks: sigma clipping, MAD, IQR, modified z-score, isolation forest, and a vote.

Every function takes the finite values of one light curve and a ``clip`` side and returns a
boolean mask, True for an outlier. ``clip`` says which side may be rejected: ``upper`` (values
above the centre), ``lower`` or ``both``. For fluxes a transit or eclipse is a *low* outlier, so
the pipeline's default (``auto``) clips ``upper`` for fluxes and, mirrored, ``lower`` for
magnitudes (bright = small magnitude; a transit makes the magnitude larger).

All but the isolation forest use medians, percentiles (linear interpolation), ``+ − × ÷`` and
``sqrt`` only, so the masks are the same on every CPU. scikit-learn's isolation-forest score
uses ``log``; only its yes/no decision is kept, and ``tests/test_clean_simd.py`` checks that it
does not change between numpy SIMD levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from astropipe.errors import ConfigError

__all__ = [
    "CLIP_SIDES",
    "sigma_clip_mask",
    "mad_mask",
    "iqr_mask",
    "modified_z_mask",
    "isolation_forest_mask",
    "vote",
    "outlier_mask",
    "running_median",
]

CLIP_SIDES = ("upper", "lower", "both")
#: Scale of the MAD that makes it the standard deviation of a normal distribution.
MAD_TO_SIGMA = 1.482602218505602


def _side(dev: np.ndarray, limit: np.ndarray | float, clip: str) -> np.ndarray:
    """Outlier where the signed deviation passes ``limit`` on the allowed side(s)."""
    if clip == "upper":
        return dev > limit
    if clip == "lower":
        return dev < -limit
    if clip == "both":
        return (dev > limit) | (dev < -limit)
    raise ConfigError(f"outliers.clip={clip!r} is not valid; use one of {list(CLIP_SIDES)}.")


def sigma_clip_mask(
    x: np.ndarray, *, sigma: float = 3.0, maxiters: int | None = 5, clip: str = "both"
) -> np.ndarray:
    """Iterative sigma clipping, astropy ``sigma_clip`` semantics.

    Centre: median, spread: population standard deviation of the points not yet clipped; a
    point is clipped when its deviation is beyond ``sigma`` standard deviations on an allowed
    side; repeat until nothing changes or ``maxiters`` rounds (``None``: until converged).
    Equal to ``astropy.stats.sigma_clip(x, sigma=sigma, maxiters=maxiters).mask`` for
    ``clip='both'`` (``sigma_lower=inf`` or ``sigma_upper=inf`` for one side).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(len(x), dtype=bool)
    it = 0
    while maxiters is None or it < maxiters:
        it += 1
        kept = x[~out]
        if len(kept) == 0:
            break
        centre = np.median(kept)
        std = np.std(kept)
        new = out | _side(x - centre, sigma * std, clip)
        if (new == out).all():
            break
        out = new
    return out


def _mad(x: np.ndarray, centre: float) -> float:
    return float(np.median(np.abs(x - centre)))


def mad_mask(x: np.ndarray, *, threshold: float = 5.0, clip: str = "both") -> np.ndarray:
    """Outlier beyond ``threshold`` × 1.4826·MAD from the median (one pass)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    centre = np.median(x)
    return _side(x - centre, threshold * MAD_TO_SIGMA * _mad(x, centre), clip)


def iqr_mask(x: np.ndarray, *, factor: float = 3.0, clip: str = "both") -> np.ndarray:
    """Outlier above Q3 + factor·IQR or below Q1 − factor·IQR (Tukey's fences)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    q1, q3 = np.percentile(x, [25.0, 75.0])
    iqr = q3 - q1
    if clip not in CLIP_SIDES:
        return _side(x, 0.0, clip)  # raises the one-line error
    hi = x > q3 + factor * iqr
    lo = x < q1 - factor * iqr
    return {"upper": hi, "lower": lo, "both": hi | lo}[clip]


def modified_z_mask(x: np.ndarray, *, threshold: float = 3.5, clip: str = "both") -> np.ndarray:
    """Iglewicz–Hoaglin modified z-score ``0.6745·(x − median)/MAD`` beyond ``threshold``.

    A MAD of 0 (more than half the values equal) flags nothing.
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    centre = np.median(x)
    mad = _mad(x, centre)
    if not mad > 0:
        return np.zeros(len(x), dtype=bool)
    z = 0.6745 * (x - centre) / mad
    return _side(z, threshold, clip)


def isolation_forest_mask(
    x: np.ndarray,
    *,
    trees: int = 100,
    contamination: float = 0.01,
    seed: int = 0,
    clip: str = "both",
) -> np.ndarray:
    """scikit-learn's ``IsolationForest`` on the values, with a fixed seed; one-sided by ``clip``.

    Only the decision (outlier or not) is kept. ``clip`` keeps the decisions on the allowed
    side of the median.
    """
    from sklearn.ensemble import IsolationForest

    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(len(x), dtype=bool)
    forest = IsolationForest(
        n_estimators=trees, contamination=contamination, random_state=seed, n_jobs=1
    )
    flagged = forest.fit_predict(x.reshape(-1, 1)) == -1
    return flagged & _side(x - np.median(x), 0.0, clip)


def running_median(x: np.ndarray, *, window: int) -> np.ndarray:
    """Median of the ``window`` points centred on each point (edges: nearest value repeated).

    A sort-based filter, so the same bytes everywhere; a window longer than ``x`` shrinks to
    the largest odd length that fits.
    """
    from scipy.ndimage import median_filter

    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return x.copy()
    w = min(window, len(x) if len(x) % 2 else len(x) - 1)
    return median_filter(x, size=max(w, 1), mode="nearest")


def vote(masks: Sequence[np.ndarray], *, k: int) -> np.ndarray:
    """Outlier where at least ``k`` of the masks say so."""
    if not masks:
        raise ConfigError("outliers.ensemble_methods is empty; name at least one method.")
    if k > len(masks):
        raise ConfigError(
            f"outliers.ensemble_k={k} is more than the {len(masks)} ensemble_methods; "
            "lower k or add methods."
        )
    count = np.zeros(len(masks[0]), dtype=np.int64)
    for m in masks:
        count += m
    return count >= k


def outlier_mask(x: np.ndarray, method: str, *, clip: str, cfg: object) -> np.ndarray:
    """Dispatch on ``method`` with the parameters of an ``OutlierConfig`` ``cfg``."""
    if method == "sigma":
        return sigma_clip_mask(x, sigma=cfg.sigma, maxiters=cfg.maxiters, clip=clip)
    if method == "mad":
        return mad_mask(x, threshold=cfg.mad_threshold, clip=clip)
    if method == "iqr":
        return iqr_mask(x, factor=cfg.iqr_factor, clip=clip)
    if method == "modified_z":
        return modified_z_mask(x, threshold=cfg.modified_z_threshold, clip=clip)
    if method == "isolation_forest":
        return isolation_forest_mask(
            x,
            trees=cfg.forest_trees,
            contamination=cfg.forest_contamination,
            seed=cfg.forest_seed,
            clip=clip,
        )
    if method == "ensemble":
        masks = [outlier_mask(x, m, clip=clip, cfg=cfg) for m in cfg.ensemble_methods]
        return vote(masks, k=cfg.ensemble_k)
    if method == "none":
        return np.zeros(len(x), dtype=bool)
    raise ConfigError(
        f"outliers.method={method!r} is not valid; use one of "
        "['none', 'sigma', 'mad', 'iqr', 'modified_z', 'isolation_forest', 'ensemble']."
    )
