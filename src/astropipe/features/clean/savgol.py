"""Savitzky–Golay smoothing with bytes that do not depend on BLAS, LAPACK or SIMD dispatch.

``scipy.signal.savgol_filter`` gets its coefficients from a least-squares solve (LAPACK) and
fits the edges (``mode='interp'``) with ``numpy.polyfit`` (LAPACK again), whose last bits depend
on the BLAS build and on the CPU. Here every coefficient is computed *exactly* in rational
arithmetic (Python integers) and rounded once to float64, and the filter is applied as a sum of
``coefficient × sample`` products in a fixed order, so only ``+`` and ``×`` — fixed by IEEE 754 —
reach the result.

The smoothed value at window position ``k`` is row ``k`` of the hat matrix of the polynomial
fit, ``H = A (AᵀA)⁻¹ Aᵀ`` with ``A[j, i] = (j − m)^i`` over the ``w = 2m + 1`` window positions:
the centre row gives the interior (what ``savgol_coeffs`` returns) and the first and last ``m``
rows give what ``mode='interp'`` computes at the edges (a polynomial fitted to the first and
last windows, evaluated there). So :func:`savgol_smooth` equals ``savgol_filter(x,
window_length, polyorder)`` to a few units in the last place.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

from astropipe.errors import ConfigError

__all__ = ["savgol_hat_rows", "savgol_segments", "savgol_smooth"]


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact Gauss–Jordan inverse of a small symmetric positive-definite matrix."""
    n = len(matrix)
    aug = [row[:] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if aug[r][col] != 0)
        aug[col], aug[pivot] = aug[pivot], aug[col]
        p = aug[col][col]
        aug[col] = [v / p for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [a - f * b for a, b in zip(aug[r], aug[col], strict=True)]
    return [row[n:] for row in aug]


@functools.lru_cache(maxsize=32)
def savgol_hat_rows(window_length: int, polyorder: int) -> np.ndarray:
    """Rows ``0 … m`` of the Savitzky–Golay hat matrix, exactly rounded to float64.

    Parameters
    ----------
    window_length
        Odd window length ``w = 2m + 1``.
    polyorder
        Polynomial order, ``< window_length``.

    Returns
    -------
    numpy.ndarray
        Shape ``(m + 1, w)``: row ``k`` gives the fitted value at window position ``k`` as
        weights on the ``w`` samples; row ``m`` is the interior filter. Rows ``m + 1 … w − 1``
        are these reversed (``H[w−1−k, w−1−j] = H[k, j]``).

    Raises
    ------
    ConfigError
        An even or too short window, or ``polyorder >= window_length``.
    """
    w, p = window_length, polyorder
    if w < 1 or w % 2 == 0:
        raise ConfigError(f"detrend.window_length={w}: expected an odd number >= 3.")
    if not 0 <= p < w:
        raise ConfigError(f"detrend.polyorder={p}: expected 0 <= polyorder < window_length ({w}).")
    m = w // 2
    t = list(range(-m, m + 1))
    # Normal matrix (AᵀA)[a, b] = Σ t^(a+b): integers, inverted exactly.
    sums = [sum(tj**e for tj in t) for e in range(2 * p + 1)]
    inv = _inverse([[Fraction(sums[a + b]) for b in range(p + 1)] for a in range(p + 1)])
    den = math.lcm(*(v.denominator for row in inv for v in row))
    g = [[int(v * den) for v in row] for row in inv]  # (AᵀA)⁻¹ · den, integers
    powers = [[tj**i for i in range(p + 1)] for tj in t]
    out = np.empty((m + 1, w), dtype=np.float64)
    for k in range(m + 1):
        ak = powers[k]
        vk = [sum(g[i][j] * ak[j] for j in range(p + 1)) for i in range(p + 1)]
        for j in range(w):
            num = sum(vk[i] * powers[j][i] for i in range(p + 1))
            out[k, j] = float(Fraction(num, den))  # one correctly rounded division
    return out


def _interior(x: np.ndarray, c: np.ndarray, m: int) -> np.ndarray:
    """``Σ_j c[j]·x[i−m+j]`` for ``i`` in ``[m, n−m)``, symmetric pairs summed j = 0, 1, …, m.

    In-place buffers only save allocations; the operations and their order are fixed, so the
    result is bit-identical wherever it is computed (a segment alone or a longer array).
    """
    n = len(x)
    core = c[m] * x[m : n - m]
    tmp = np.empty_like(core)
    for j in range(1, m + 1):
        np.add(x[m + j : n - m + j], x[m - j : n - m - j], out=tmp)
        np.multiply(tmp, c[m + j], out=tmp)
        np.add(core, tmp, out=core)
    return core


def _edges(x: np.ndarray, h: np.ndarray, w: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The first and last ``m`` smoothed values (the polynomial fits of ``mode='interp'``)."""
    # Exact products, then numpy's pairwise sum along each row: a fixed order, no BLAS.
    left = np.add.reduce(h[:m] * x[:w], axis=1)
    right = np.add.reduce(h[:m] * x[len(x) - w :][::-1], axis=1)[::-1]
    return left, right


def savgol_smooth(x: np.ndarray, *, window_length: int, polyorder: int) -> np.ndarray:
    """``scipy.signal.savgol_filter(x, window_length, polyorder)`` (``mode='interp'``).

    Deterministic: exact coefficients (:func:`savgol_hat_rows`) and a fixed-order sum of
    products, so the bytes are the same on every CPU and BLAS.

    Parameters
    ----------
    x
        Samples, assumed evenly spaced; ``len(x) >= window_length``.
    window_length, polyorder
        As for ``savgol_filter``.

    Returns
    -------
    numpy.ndarray
        The smoothed samples (float64, same length).
    """
    x = np.asarray(x, dtype=np.float64)
    return savgol_segments(
        x, np.array([0]), np.array([len(x)]), window_length=window_length, polyorder=polyorder
    )


def savgol_segments(
    x: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    *,
    window_length: int,
    polyorder: int,
) -> np.ndarray:
    """:func:`savgol_smooth` of each ``x[low[k]:high[k]]`` (each at least ``window_length``
    long), in one pass over ``x``: the interior filter runs once over the whole array and
    each piece then takes its interior from it and gets its own edges. Values outside the
    pieces are NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    w = window_length
    h = savgol_hat_rows(w, polyorder)
    m = w // 2
    out = np.full(n, np.nan)
    if len(low) == 0:
        return out
    if int(np.min(np.asarray(high) - np.asarray(low))) < w:
        raise ValueError(f"savgol: a piece is shorter than window_length={w}")
    core = _interior(x, h[m], m) if n >= w else np.zeros(0)
    for lo, hi in zip(low, high, strict=True):
        lo, hi = int(lo), int(hi)
        out[lo + m : hi - m] = core[lo : hi - 2 * m]
        if m:
            left, right = _edges(x[lo:hi], h, w, m)
            out[lo : lo + m] = left
            out[hi - m : hi] = right
    return out
