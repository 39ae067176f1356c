"""Lomb–Scargle best period, its power and false-alarm probability (astropy), per group.

The periodogram needs sin/cos (and the false-alarm probability exp/log/gamma), whose last bits
may follow the CPU and the math library. The stored values are therefore rounded to
:data:`SIGNIFICAND_BITS` significand bits — relative step 2⁻³⁰, i.e. within 1e-9 relative of
the float64 result — with exact operations (``frexp``/``rint``/``ldexp``), which hides
last-bit differences unless a value falls next to a rounding boundary
(docs/reproducibility.md; proved by tests/test_simd_levels.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from astropy.timeseries import LombScargle

from astropipe.configtypes import PositiveFloat, PositiveInt

__all__ = [
    "PERIODOGRAM_COLUMNS",
    "SIGNIFICAND_BITS",
    "PeriodogramConfig",
    "lomb_scargle",
    "round_significand",
]

#: Output columns: best period (d), its normalised power, its false-alarm probability.
PERIODOGRAM_COLUMNS = ("ls_period", "ls_power", "ls_fap")
#: Significand bits kept of every stored periodogram value (2⁻³⁰ ≈ 9.3e-10 relative).
SIGNIFICAND_BITS = 30


@dataclass(frozen=True)
class PeriodogramConfig:
    """``features.extract.periodogram``: the frequency grid and the false-alarm method."""

    enabled: bool = True
    min_period: PositiveFloat = 0.1
    max_period: PositiveFloat = 100.0
    samples_per_peak: PositiveInt = 5
    method: Literal["fast", "slow"] = "fast"
    fap_method: Literal["baluev", "davies", "naive"] = "baluev"
    min_points: PositiveInt = 10

    def __post_init__(self) -> None:
        if not self.min_period < self.max_period:
            raise ValueError(
                f"min_period < max_period ({self.max_period}), not {self.min_period}; "
                "the grid runs from 1/max_period to 1/min_period"
            )


def round_significand(x: np.ndarray, *, bits: int = SIGNIFICAND_BITS) -> np.ndarray:
    """Round each finite value to ``bits`` significand bits; NaN and infinities pass through.

    ``frexp``/``ldexp`` only move the exponent and ``rint`` rounds half to even, all exact.
    """
    x = np.asarray(x, dtype=np.float64)
    mant, exp = np.frexp(x)
    out = np.ldexp(np.rint(np.ldexp(mant, bits)), exp - bits)
    return np.where(np.isfinite(x), out, x)


def lomb_scargle(
    t: np.ndarray,
    y: np.ndarray,
    err: np.ndarray,
    starts: np.ndarray,
    *,
    cfg: PeriodogramConfig,
) -> dict[str, np.ndarray]:
    """Best period, power and false-alarm probability of each group.

    Parameters
    ----------
    t, y, err
        Time (d), value and error of each point, groups contiguous from ``starts``. Errors
        that are not all finite and positive in a group are ignored (unweighted periodogram).
    starts
        Index of each group's first point.
    cfg
        The frequency grid (``1/max_period`` to ``1/min_period``, ``samples_per_peak`` per
        peak width 1/baseline) and methods; groups with fewer than ``cfg.min_points`` points
        or one distinct time get NaN.

    Returns
    -------
    dict
        :data:`PERIODOGRAM_COLUMNS` → per-group values rounded by :func:`round_significand`.
    """
    ends = np.append(starts[1:], len(t)) if len(starts) else starts
    out = {c: np.full(len(starts), np.nan) for c in PERIODOGRAM_COLUMNS}
    fmin, fmax = 1.0 / cfg.max_period, 1.0 / cfg.min_period
    for g, (a, b) in enumerate(zip(starts, ends, strict=True)):
        tg, yg, eg = t[a:b], y[a:b], err[a:b]
        if b - a < cfg.min_points or not tg[-1] > tg[0] or not np.ptp(yg) > 0:
            continue
        dy = eg if bool(np.all(np.isfinite(eg) & (eg > 0))) else None
        ls = LombScargle(tg, yg, dy)
        # astropy's Lomb-Scargle warns only through numpy's floating-point errors: errstate
        # is thread-local, warnings.catch_warnings would swap the process's filters under the
        # other batches running on threads
        with np.errstate(all="ignore"):
            freq, power = ls.autopower(
                minimum_frequency=fmin,
                maximum_frequency=fmax,
                samples_per_peak=cfg.samples_per_peak,
                method=cfg.method,
            )
            best = int(np.argmax(power))
            fap = ls.false_alarm_probability(
                power[best], method=cfg.fap_method, minimum_frequency=fmin, maximum_frequency=fmax
            )
        out["ls_period"][g] = 1.0 / freq[best]
        out["ls_power"][g] = power[best]
        out["ls_fap"][g] = fap
    return {c: round_significand(v) for c, v in out.items()}
