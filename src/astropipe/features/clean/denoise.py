"""Wavelet denoising: soft thresholding of the detail coefficients at the universal threshold.

Donoho & Johnstone (1994): noise σ from the finest details, ``σ = median(|d₁|) / 0.6745``;
threshold ``λ = σ·sqrt(2 ln n)``; every detail coefficient shrunk by ``λ`` toward zero (soft).
PyWavelets does the transforms. ``ln n`` comes from Python's ``math.log`` of an integer and the
transforms are compiled convolutions, but to keep the stored bytes independent of such
details the result is rounded to :data:`DENOISE_SIGNIFICAND_BITS` significand bits (about 1e-9
relative) — the stated precision of a denoised value.
"""

from __future__ import annotations

import math

import numpy as np

from astropipe.errors import ConfigError
from astropipe.features.clean.precision import round_significand

__all__ = ["wavelet_denoise", "DENOISE_SIGNIFICAND_BITS"]

DENOISE_SIGNIFICAND_BITS = 30


def wavelet_denoise(x: np.ndarray, *, wavelet: str = "db4", levels: int = 3) -> np.ndarray:
    """Denoise evenly sampled ``x``; fewer levels are used when ``x`` is too short for them.

    Raises
    ------
    ConfigError
        ``wavelet`` is not a discrete wavelet PyWavelets knows.
    """
    import pywt

    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    try:
        w = pywt.Wavelet(wavelet)
    except ValueError:
        raise ConfigError(
            f"denoise.wavelet={wavelet!r} is not a discrete wavelet; use one of "
            "pywt.wavelist(kind='discrete'), e.g. 'db4', 'sym8', 'haar'."
        ) from None
    level = min(levels, pywt.dwt_max_level(n, w.dec_len))
    if level < 1:
        return x.copy()
    coeffs = pywt.wavedec(x, w, level=level, mode="symmetric")
    sigma = float(np.median(np.abs(coeffs[-1]))) / 0.6745
    thr = sigma * math.sqrt(2.0 * math.log(n))
    coeffs = [coeffs[0]] + [pywt.threshold(c, thr, mode="soft") for c in coeffs[1:]]
    out = pywt.waverec(coeffs, w, mode="symmetric")[:n]
    return round_significand(out, bits=DENOISE_SIGNIFICAND_BITS)
