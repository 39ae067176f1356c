"""DC (apparent) magnitudes of ZTF alert detections from the reference source and the difference.

An alert's ``magpsf`` is the magnitude of the *difference* image flux; for a variable star on a
reference source, half its epochs are fainter than the reference (``isdiffpos`` f) and their
``magpsf`` is no brightness at all. The standard broker correction (ALeRCE, Förster et al.
2021, AJ 161, 242; ZTF Science Data System explanatory supplement §11) adds the reference flux
back:

    f_ref  = 10^(−0.4 · magnr),   f_diff = ±10^(−0.4 · magpsf)   (sign from isdiffpos)
    f_dc   = f_ref + f_diff,      m_dc = −2.5 · log10(f_dc)
    σ_dc   = sqrt((f_diff · sigmapsf)² + (f_ref · sigmagnr)²) / f_dc

(σ in magnitudes: the factors 0.4·ln 10 and 2.5 / ln 10 of the two conversions cancel.) It
applies where the alert lies on the reference source (``distnr`` ≤ ``max_distnr`` arcsec) and
``f_dc > 0``; other detections keep ``magpsf``.

``pow`` and ``log10`` follow the CPU's math kernels in their last bits, so ``m_dc`` and ``σ_dc``
are computed in float64 and stored rounded to :data:`DC_DECIMALS` decimals (1e-6 mag, four
orders below the best ZTF error, ~0.01 mag), which hides those bits unless a value falls next
to a rounding boundary (docs/reproducibility.md; tests/test_simd_levels.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from astropipe.lightcurve import FLAG_DC_MAGNITUDE, FLAG_NEGATIVE_DIFF

__all__ = ["DC_DECIMALS", "dc_magnitude", "apply_dc_magnitudes"]

#: Decimals (of a magnitude) kept of a stored DC magnitude and its error.
DC_DECIMALS = 6


def _round(x: np.ndarray) -> np.ndarray:
    # x * 1e6, rint and / 1e6 are each correctly rounded: the same bytes from the same x.
    scale = float(10**DC_DECIMALS)
    return np.rint(x * scale) / scale


def dc_magnitude(
    magpsf: np.ndarray,
    sigmapsf: np.ndarray,
    magnr: np.ndarray,
    sigmagnr: np.ndarray,
    negative: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """DC magnitude and its error (rounded to 1e-6 mag); NaN where ``f_dc <= 0`` or undefined.

    Parameters
    ----------
    magpsf, sigmapsf
        Difference-image PSF magnitude and its error.
    magnr, sigmagnr
        Magnitude of the nearest reference-image source and its error.
    negative
        True where the difference is negative (``isdiffpos`` f).
    """
    magpsf, sigmapsf, magnr, sigmagnr = (
        np.asarray(a, dtype=np.float64) for a in (magpsf, sigmapsf, magnr, sigmagnr)
    )
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        f_ref = np.power(10.0, -0.4 * magnr)
        f_diff = np.power(10.0, -0.4 * magpsf)
        f_dc = f_ref + np.where(negative, -f_diff, f_diff)
        good = f_dc > 0
        mag = np.where(good, -2.5 * np.log10(np.where(good, f_dc, 1.0)), np.nan)
        a, b = f_diff * sigmapsf, f_ref * sigmagnr
        err = np.where(good, np.sqrt(a * a + b * b) / f_dc, np.nan)
    return _round(mag), _round(err)


def apply_dc_magnitudes(lc: pd.DataFrame, *, max_distnr: float) -> pd.DataFrame:
    """Replace ``mag``/``mag_err`` of alert detections by DC magnitudes where defined.

    ``lc`` holds light-curve rows plus ``magnr``, ``sigmagnr`` and ``distnr`` (NaN where the
    packet had none). A converted row gets :data:`FLAG_DC_MAGNITUDE` and loses
    :data:`FLAG_NEGATIVE_DIFF` (its magnitude is now a brightness); every other row is
    returned unchanged.
    """
    out = lc.copy()
    flags = out["flags"].to_numpy(np.int64)
    negative = (flags & FLAG_NEGATIVE_DIFF) != 0
    mag, err = dc_magnitude(
        out["mag"].to_numpy(np.float64),
        out["mag_err"].to_numpy(np.float64),
        out["magnr"].to_numpy(np.float64),
        out["sigmagnr"].to_numpy(np.float64),
        negative,
    )
    with np.errstate(invalid="ignore"):
        near = out["distnr"].to_numpy(np.float64) <= max_distnr
    use = near & ~out["is_upper_limit"].to_numpy(bool) & np.isfinite(mag) & np.isfinite(err)
    out["mag"] = np.where(use, mag, out["mag"].to_numpy(np.float64))
    out["mag_err"] = np.where(use, err, out["mag_err"].to_numpy(np.float64))
    out["flags"] = np.where(use, (flags & ~FLAG_NEGATIVE_DIFF) | FLAG_DC_MAGNITUDE, flags)
    return out
