"""Storing values at a stated precision, with exact operations only.

Values computed with transcendental functions (a wavelet threshold uses ``log``; scikit-learn's
isolation-forest scores use ``log``) can differ in their last bits between CPUs. Rounding them
to fewer significand bits than float64's 52 hides such differences unless a value falls right
next to a rounding boundary. The rounding itself is exact: ``frexp``/``ldexp`` move the
exponent and ``rint`` rounds half to even.
"""

from __future__ import annotations

import numpy as np

__all__ = ["round_significand"]


def round_significand(x: np.ndarray, *, bits: int) -> np.ndarray:
    """Round each finite value to ``bits`` significand bits (relative step ``2**-bits``).

    NaN and infinities pass through. ``bits=30`` is about 1e-9 relative.
    """
    x = np.asarray(x, dtype=np.float64)
    mant, exp = np.frexp(x)  # x = mant · 2**exp, 0.5 <= |mant| < 1 (exact)
    scaled = np.ldexp(mant, bits)  # exact
    out = np.ldexp(np.rint(scaled), exp - bits)  # rint: exact integer, ldexp: exact
    return np.where(np.isfinite(x), out, x)
