"""Mission time (BTJD, BKJD) → BJD (TDB) → MJD (TDB), by the FITS timing keywords.

Kepler, K2 and TESS light curves stamp each cadence with ``TIME = BJD - BJDREF`` in the TDB
scale at the solar-system barycentre (``TIMEREF = 'SOLARSYSTEM'``, ``TIMESYS = 'TDB'``,
``TIMEUNIT = 'd'``; BTJD has ``BJDREFI = 2457000``, BKJD ``2454833``, ``BJDREFF = 0``). The MJD
in the same scale is

    mjd = ((BJDREFI - 2400000.5) + BJDREFF) + TIME

evaluated in float64 in exactly that order: ``BJDREFI - 2400000.5`` is exact, and only + and −
are used, so the result is the same on every machine (the determinism rule of
docs/reproducibility.md). It agrees with ``astropy.time.Time(BJDREFI + BJDREFF, TIME,
format="jd", scale="tdb").mjd`` to within one float64 ulp of the MJD (≈ 0.6 µs today). No
scale conversion happens, so no leap-second table is involved: a file in another scale
(TIMESYS other than TDB) is refused rather than converted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from astropipe.errors import InputFileError

__all__ = ["MJD_EPOCH_JD", "TimeReference", "time_reference", "mission_time_to_mjd"]

#: JD of MJD 0.
MJD_EPOCH_JD = 2400000.5


@dataclass(frozen=True)
class TimeReference:
    """BJD (TDB) of TIME = 0, split as the headers give it, and where it came from."""

    jd_int: float
    jd_frac: float
    source: str  # "BJDREFI+BJDREFF" | "BJDREF" | "column map"
    scale: str = "TDB"

    @property
    def mjd_offset(self) -> float:
        """MJD of TIME = 0: ``(jd_int - 2400000.5) + jd_frac``."""
        return (self.jd_int - MJD_EPOCH_JD) + self.jd_frac


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputFileError(
            f"{where}: header {key}={value!r} is not a number; the file is damaged or not a "
            "light curve — re-download it."
        )
    out = float(value)
    if not np.isfinite(out):
        raise InputFileError(f"{where}: header {key}={value!r} is not finite; re-download it.")
    return out


def time_reference(
    card: Callable[[str], Any], *, fallback_jd: float | None, default_scale: str, where: str
) -> TimeReference:
    """Read the time reference from the headers, checking the keywords that say what TIME is.

    Parameters
    ----------
    card
        Header lookup: keyword → value or None (table header first, then primary).
    fallback_jd
        BJD of TIME = 0 when the headers carry none (the column map's ``time_reference_jd``).
    default_scale
        Scale assumed when TIMESYS is absent.
    where
        The file, for messages.

    Raises
    ------
    InputFileError
        TIMEREF not SOLARSYSTEM, TIMESYS not TDB, TIMEUNIT not days, or no reference at all.
    """
    timeref = card("TIMEREF")
    if timeref is not None and str(timeref).strip().upper() != "SOLARSYSTEM":
        raise InputFileError(
            f"{where}: TIMEREF={timeref!r}, expected 'SOLARSYSTEM' (barycentric times); this "
            "reader does not apply barycentric corrections — use a barycentred product."
        )
    scale = card("TIMESYS")
    scale = default_scale if scale is None else str(scale).strip()
    if scale.upper() != "TDB":
        raise InputFileError(
            f"{where}: TIMESYS={scale!r}, expected 'TDB'; other scales need leap-second "
            "conversion, which this reader does not do — use a TDB product."
        )
    unit = card("TIMEUNIT")
    if unit is not None and str(unit).strip().lower() not in ("d", "day", "days"):
        raise InputFileError(f"{where}: TIMEUNIT={unit!r}, expected 'd' (days).")
    refi, reff, ref = card("BJDREFI"), card("BJDREFF"), card("BJDREF")
    if refi is not None:
        jd_int = _number(refi, "BJDREFI", where)
        jd_frac = 0.0 if reff is None else _number(reff, "BJDREFF", where)
        return TimeReference(jd_int, jd_frac, "BJDREFI+BJDREFF")
    if ref is not None:
        return TimeReference(_number(ref, "BJDREF", where), 0.0, "BJDREF")
    if fallback_jd is not None:
        return TimeReference(float(fallback_jd), 0.0, "column map")
    raise InputFileError(
        f"{where}: no time reference (neither BJDREFI/BJDREFF nor BJDREF in the headers) and "
        "the column map gives no time_reference_jd; add it to the layout in conf/tess."
    )


def mission_time_to_mjd(time: np.ndarray, ref: TimeReference) -> np.ndarray:
    """MJD (TDB) of mission times ``time`` (days since ``ref``), float64.

    Computed as ``((jd_int - 2400000.5) + jd_frac) + time``, in that order.
    """
    return np.asarray(time, dtype=np.float64) + ref.mjd_offset
