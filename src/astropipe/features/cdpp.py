"""Combined differential photometric precision (CDPP), as lightkurve's ``estimate_cdpp``.

``lightkurve.LightCurve.estimate_cdpp(transit_duration, savgol_window, savgol_polyorder,
sigma)`` (Gilliland et al. 2011, ApJS 197, 6; Van Cleve et al. 2016, PASP 128, 075002), step
for step:

1. flatten with a Savitzky–Golay filter (``flatten(window_length=savgol_window,
   polyorder=savgol_polyorder)``: lightkurve's defaults sigma 3, 3 iterations, break
   tolerance 5) — :func:`astropipe.features.clean.detrend.flatten`, whose coefficients are
   exact, so no LAPACK/BLAS or CPU dispatch reaches the result;
2. drop outliers with astropy's ``sigma_clip(sigma=sigma, maxiters=5)`` (median centre,
   population standard deviation, both sides; the last bounds applied to every point);
3. normalise to ppm (÷ median × 10⁶);
4. the standard deviation (ddof 0) of the running mean over ``transit_duration`` cadences
   (cumulative sums, as ``lightkurve.utils.running_mean``).

Only ``+ − × ÷ sqrt``, medians, sorts and fixed-order sums, so the stored bytes do not depend
on the CPU. Magnitude groups get NaN: CDPP is a property of a flux time series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astropipe.configtypes import NonNegativeInt, PositiveFloat, PositiveInt

__all__ = ["CdppConfig", "cdpp_ppm", "group_cdpp"]


@dataclass(frozen=True)
class CdppConfig:
    """``features.extract.cdpp``: lightkurve's ``estimate_cdpp`` parameters."""

    enabled: bool = True
    transit_duration: PositiveInt = 13
    savgol_window: PositiveInt = 101
    savgol_polyorder: NonNegativeInt = 2
    sigma: PositiveFloat = 5.0

    def __post_init__(self) -> None:
        if self.savgol_window % 2 == 0 or self.savgol_polyorder >= self.savgol_window:
            raise ValueError(
                f"an odd savgol_window above savgol_polyorder ({self.savgol_polyorder}), not "
                f"{self.savgol_window}; e.g. 101"
            )


def _sigma_clip_keep(x: np.ndarray, sigma: float, maxiters: int = 5) -> np.ndarray:
    """True where astropy's ``sigma_clip(x, sigma, maxiters)`` keeps a point."""
    data = x[np.isfinite(x)]
    lo = hi = np.nan
    for _ in range(maxiters):
        if not len(data):
            break
        cen = np.median(data)
        std = np.std(data)
        lo, hi = cen - std * sigma, cen + std * sigma
        size = len(data)
        data = data[(data >= lo) & (data <= hi)]
        if len(data) == size:
            break
    return (x >= lo) & (x <= hi)


def cdpp_ppm(time: np.ndarray, flux: np.ndarray, *, cfg: CdppConfig) -> float:
    """CDPP (ppm) of one light curve, equal to lightkurve's ``estimate_cdpp``."""
    from astropipe.features.clean.detrend import flatten

    flat = flatten(time, flux, window_length=cfg.savgol_window, polyorder=cfg.savgol_polyorder).flat
    flat = flat[_sigma_clip_keep(flat, cfg.sigma)]
    if not len(flat):
        return float("nan")
    ppm = flat / np.median(flat) * 1e6
    window = min(cfg.transit_duration, len(ppm))
    cumsum = np.cumsum(np.insert(ppm, 0, 0.0))
    mean = (cumsum[window:] - cumsum[:-window]) / float(window)
    return float(np.std(mean))


def group_cdpp(
    t: np.ndarray, y: np.ndarray, is_flux: np.ndarray, starts: np.ndarray, *, cfg: CdppConfig
) -> np.ndarray:
    """:func:`cdpp_ppm` of every flux group (contiguous from ``starts``); NaN for magnitudes."""
    ends = np.append(starts[1:], len(t)) if len(starts) else starts
    out = np.full(len(starts), np.nan)
    for g in np.flatnonzero(is_flux):
        a, b = starts[g], ends[g]
        out[g] = cdpp_ppm(t[a:b], y[a:b], cfg=cfg)
    return out
