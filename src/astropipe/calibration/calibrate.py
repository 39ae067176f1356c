"""Calibration verbs on arrays: overscan, trim, gain, bias, dark, flat, and the ERR/MASK planes.

Each verb is a pure function (arrays in, a new array out) mirroring the ccdproc verb of the
same name, so a frame calibrated here and with ccdproc from the same inputs agrees to rounding:

========================  ===============================================================
astropipe                 ccdproc
========================  ===============================================================
``subtract_overscan``     ``subtract_overscan(ccd, fits_section=BIASSEC, median=...)``
``trim``                  ``trim_image(ccd, fits_section=TRIMSEC)``
``gain_correct``          ``gain_correct(ccd, gain)``
``subtract_bias``         ``subtract_bias(ccd, master)``
``subtract_dark``         ``subtract_dark(ccd, master, dark_exposure=1 s, data_exposure=t)``
``flat_correct``          ``flat_correct(ccd, flat, norm_value=1)`` (the master is normalised)
========================  ===============================================================

Uncertainty (all in electrons): the raw frame contributes Poisson noise on the collected
charge (sky + sources + dark current, i.e. the bias-subtracted signal *before* the dark is
subtracted, floored at 0) plus the read noise squared; each master contributes its own
standard error, scaled as it was applied (dark × t); dividing by the flat adds the flat's
relative error in quadrature.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from astropipe.calibration.sections import Section, overscan_axis, overscan_vector

__all__ = [
    "MASK_BITS",
    "SATURATED",
    "BAD_FLAT",
    "COSMIC_RAY",
    "NONFINITE",
    "MasterUsed",
    "master_history",
    "masters_used",
    "master_imagetyp",
    "master_kind",
    "subtract_overscan",
    "trim",
    "gain_correct",
    "subtract_bias",
    "subtract_dark",
    "flat_correct",
    "poisson_variance",
    "science_error",
    "flat_bad_pixels",
]


#: Bits of the MASK extension (a pixel's value is the OR of its flags; 0 = good).
#: NONFINITE: the raw or calibrated value is NaN or infinite (SCI is NaN there, ERR 0).
MASK_BITS: dict[str, int] = {"SATURATED": 1, "BAD_FLAT": 2, "COSMIC_RAY": 4, "NONFINITE": 8}
SATURATED = MASK_BITS["SATURATED"]
BAD_FLAT = MASK_BITS["BAD_FLAT"]
COSMIC_RAY = MASK_BITS["COSMIC_RAY"]
NONFINITE = MASK_BITS["NONFINITE"]

# The header contract of calibrate_images' outputs: the writer (science.py) and the readers
# (validation) both go through these, so neither parses the other's text by hand.
_MASTER = " master: "
_SHA256 = "sha256 "


@dataclass(frozen=True)
class MasterUsed:
    """A master frame a calibrated frame names in its HISTORY: role, file name, SHA-256."""

    role: str
    name: str
    sha256: str | None


def master_history(role: str, name: str, sha256: str) -> tuple[str, str]:
    """The two HISTORY cards naming a master used (``bias master: <name>``, ``sha256 <hex>``)."""
    return f"{role}{_MASTER}{name}", f"{_SHA256}{sha256}"


def masters_used(history: Iterable[object]) -> list[MasterUsed]:
    """The masters named by :func:`master_history` cards among a header's HISTORY, in order."""
    cards = [str(c) for c in history]
    out: list[MasterUsed] = []
    for i, card in enumerate(cards):
        if _MASTER in card:
            role, name = card.split(_MASTER, 1)
            nxt = cards[i + 1] if i + 1 < len(cards) else ""
            sha = nxt.removeprefix(_SHA256).strip() if nxt.startswith(_SHA256) else ""
            out.append(MasterUsed(role.strip(), name.strip(), sha or None))
    return out


def master_imagetyp(kind: str) -> str:
    """IMAGETYP of a master frame of ``kind`` (``MASTER BIAS``)."""
    return f"MASTER {kind.upper()}"


def master_kind(imagetyp: object) -> str | None:
    """Inverse of :func:`master_imagetyp`: ``bias``, ``dark``, ``flat``; None for other values."""
    text = str(imagetyp).strip()
    if text.upper().startswith("MASTER "):
        return text[len("MASTER ") :].strip().lower() or None
    return None


def subtract_overscan(
    data: np.ndarray,
    biassec: Section,
    *,
    method: str = "median",
    axis: int | None = None,
) -> np.ndarray:
    """Subtract the overscan level, one value per row (or column), from the whole frame.

    Parameters
    ----------
    data
        Raw frame (untrimmed; the overscan strip lies inside it).
    biassec
        The overscan region (parsed ``BIASSEC``).
    method
        ``median`` or ``mean`` of each line of the strip.
    axis
        1: a value per row; 0: a value per column; None: chosen from the strip's shape as
        ccdproc does (a tall strip gives one value per row).
    """
    ax = overscan_axis(biassec) if axis is None else axis
    vec = overscan_vector(data[biassec.slices], axis=ax, method=method, shape=data.shape)
    return np.asarray(data, dtype=np.float64) - vec


def trim(data: np.ndarray, trimsec: Section | None) -> np.ndarray:
    """Keep the ``TRIMSEC`` region (a copy); the frame unchanged when there is none."""
    return np.array(data[trimsec.slices] if trimsec is not None else data, dtype=np.float64)


def gain_correct(data: np.ndarray, gain: float) -> np.ndarray:
    """ADU → electrons."""
    return np.asarray(data, dtype=np.float64) * float(gain)


def subtract_bias(data: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Subtract the master bias (same shape, electrons)."""
    return np.asarray(data, dtype=np.float64) - bias


def subtract_dark(data: np.ndarray, dark_rate: np.ndarray, exptime: float) -> np.ndarray:
    """Subtract the master dark, stored per second, scaled to ``exptime`` seconds."""
    return np.asarray(data, dtype=np.float64) - np.asarray(dark_rate, dtype=np.float64) * exptime


def flat_correct(data: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Divide by the normalised master flat (pixels where the flat is not > 0 divide by 1)."""
    f = np.asarray(flat, dtype=np.float64)
    return np.asarray(data, dtype=np.float64) / np.where(f > 0, f, 1.0)


def poisson_variance(signal_e: np.ndarray, read_noise_e: float) -> np.ndarray:
    """Variance of a raw frame in electrons²: the collected charge (floored at 0) + RN²."""
    rn = float(read_noise_e)
    return np.maximum(signal_e, 0.0) + rn * rn  # a product, not pow(): IEEE-exact everywhere


def science_error(
    signal_e: np.ndarray,
    *,
    read_noise_e: float,
    flat: np.ndarray,
    dark: np.ndarray | None = None,
    bias_err: np.ndarray | None = None,
    dark_err: np.ndarray | None = None,
    exptime: float = 0.0,
    flat_err: np.ndarray | None = None,
) -> np.ndarray:
    """Standard error of ``signal / flat`` in electrons.

    The Poisson term is on the charge the pixel actually collected, ``signal + dark · t``
    (floored at 0): subtracting the master dark removes the dark current's mean, not its shot
    noise, which dominates hot pixels.

    Parameters
    ----------
    signal_e
        The bias- and dark-subtracted frame, before the flat (electrons).
    read_noise_e
        Read noise of the frame, electrons.
    flat
        Normalised master flat.
    dark
        The master dark that was subtracted (electrons per second), or None when no dark was.
    bias_err, dark_err, flat_err
        Standard errors of the masters (dark per second).
    exptime
        Exposure time the dark was scaled to.
    """
    collected = np.asarray(signal_e, dtype=np.float64)
    if dark is not None:
        collected = collected + np.asarray(dark, dtype=np.float64) * exptime
    var = poisson_variance(collected, read_noise_e)
    if bias_err is not None:
        var = var + np.asarray(bias_err, dtype=np.float64) ** 2
    if dark_err is not None:
        var = var + (np.asarray(dark_err, dtype=np.float64) * exptime) ** 2
    f = np.asarray(flat, dtype=np.float64)
    f = np.where(f > 0, f, 1.0)
    out = var / (f * f)
    if flat_err is not None:
        out = out + (signal_e / f) ** 2 * (np.asarray(flat_err, dtype=np.float64) / f) ** 2
    return np.sqrt(out)


def flat_bad_pixels(flat: np.ndarray, *, low: float, high: float) -> np.ndarray:
    """Pixels whose normalised flat response is outside ``[low, high]`` or not finite."""
    f = np.asarray(flat)
    return ~np.isfinite(f) | (f < low) | (f > high)
