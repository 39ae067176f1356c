"""FITS header corrections and the values fits_to_zarr reads from headers.

Radio images from WSClean and friends reach us with small irregularities that readers must
not trip over (the OVRO-LWA portal "fixes" them before conversion). Each correction here
returns a short, file-independent description; the writer stores the union in the Zarr
store's attributes, so what was changed is recorded next to the data.

Corrections
-----------
- RA given as a negative angle (the real OVRO-LWA sample has ``CRVAL1 = -131.12``): wrapped
  into [0, 360) deg so pixel RAs come out in the usual range.
- Missing ``CUNITn`` on celestial / FREQ axes: ``deg`` / ``Hz`` (the FITS WCS defaults).
- Missing or non-canonical ``BUNIT``: ``Jy/beam`` for radio images (canonical spelling).
- Degenerate (length-1) FREQ and STOKES axes: dropped from the pixel array, kept as
  coordinates; a missing FREQ axis takes the frequency from the file name, a missing STOKES
  axis means Stokes I.
- ``BSCALE``/``BZERO``: applied to the data (astropy does the arithmetic); the keywords are
  removed because the stored values are physical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from astropy.io import fits
from astropy.time import Time

from astropipe.errors import InputFileError

__all__ = [
    "STOKES_CODES",
    "Correction",
    "fix_header",
    "find_axis",
    "axis_values",
    "header_time",
    "beam",
    "stokes_labels",
]

#: FITS STOKES axis codes (WCS paper III, table 7).
STOKES_CODES: dict[int, str] = {
    1: "I", 2: "Q", 3: "U", 4: "V",
    -1: "RR", -2: "LL", -3: "RL", -4: "LR",
    -5: "XX", -6: "YY", -7: "XY", -8: "YX",
}  # fmt: skip


class Correction:
    """Names of the header corrections, as stored in the store attributes."""

    RA_WRAPPED = "CRVAL of the RA axis outside [0, 360) deg (negative RA): wrapped into [0, 360)"
    CUNIT_CELESTIAL = "CUNIT missing on a celestial axis: deg assumed (FITS default)"
    CUNIT_FREQ = "CUNIT missing on the FREQ axis: Hz assumed (FITS default)"
    BUNIT_MISSING = "BUNIT missing: Jy/beam assumed for a radio image"
    BUNIT_CANONICAL = "BUNIT spelled non-canonically (e.g. JY/BEAM): rewritten as Jy/beam"
    FREQ_DEGENERATE = (
        "degenerate FREQ axis (length 1) dropped from the pixels; kept as a coordinate"
    )
    STOKES_DEGENERATE = (
        "degenerate STOKES axis (length 1) dropped from the pixels; kept as a coordinate"
    )
    FREQ_FROM_NAME = "no FREQ axis: frequency taken from the file name"
    STOKES_ASSUMED = "no STOKES axis: Stokes I assumed"
    BSCALE_BZERO = "BSCALE/BZERO applied to the data (stored values are physical)"
    BEAM_MISSING = "BMAJ/BMIN/BPA missing: beam stored as NaN"
    TIME_FROM_NAME = "DATE-OBS missing: time taken from the file name"
    EXPTIME_MISSING = "EXPTIME missing: exposure stored as NaN"
    FILTER_MISSING = "FILTER missing: filter stored as an empty string"


@dataclass(frozen=True)
class Axis:
    """One FITS axis: 1-based number, length and linear WCS."""

    number: int
    length: int
    crval: float
    crpix: float
    cdelt: float


def find_axis(header: fits.Header, ctype_prefix: str) -> Axis | None:
    """Return the axis whose ``CTYPEn`` starts with ``ctype_prefix``, or None."""
    for n in range(1, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{n}", "")).upper().startswith(ctype_prefix):
            return Axis(
                number=n,
                length=int(header[f"NAXIS{n}"]),
                crval=float(header.get(f"CRVAL{n}", 0.0)),
                crpix=float(header.get(f"CRPIX{n}", 1.0)),
                cdelt=float(header.get(f"CDELT{n}", 1.0)),
            )
    return None


def axis_values(axis: Axis) -> list[float]:
    """World values of a linear axis at each pixel (FITS 1-based ``CRPIX``)."""
    return [axis.crval + (k + 1 - axis.crpix) * axis.cdelt for k in range(axis.length)]


def stokes_labels(axis: Axis | None, *, where: str) -> list[str]:
    """Stokes labels of a STOKES axis (``["I"]`` when there is none)."""
    if axis is None:
        return ["I"]
    labels = []
    for value in axis_values(axis):
        code = int(round(value))
        if code not in STOKES_CODES:
            raise InputFileError(
                f"{where}: STOKES axis value {value} is not a FITS Stokes code; valid codes are "
                f"{sorted(STOKES_CODES)} (1=I, -5=XX, ...); fix CRVAL/CDELT of the STOKES axis."
            )
        labels.append(STOKES_CODES[code])
    return labels


def fix_header(header: fits.Header, *, radio: bool) -> tuple[fits.Header, tuple[str, ...]]:
    """Return a corrected copy of ``header`` and the corrections applied (see module doc).

    Parameters
    ----------
    header
        The primary (or SCI) header as read.
    radio
        True for radio images (BUNIT defaults to Jy/beam; FREQ/STOKES axes expected).
    """
    h = header.copy()
    done: list[str] = []
    for n in range(1, int(h.get("NAXIS", 0)) + 1):
        ctype = str(h.get(f"CTYPE{n}", "")).upper()
        celestial = ctype.startswith(("RA-", "DEC-", "RA--", "GLON", "GLAT")) or ctype in (
            "RA",
            "DEC",
        )
        if celestial and not str(h.get(f"CUNIT{n}", "")).strip():
            h[f"CUNIT{n}"] = "deg"
            done.append(Correction.CUNIT_CELESTIAL)
        if ctype.startswith("FREQ") and not str(h.get(f"CUNIT{n}", "")).strip():
            h[f"CUNIT{n}"] = "Hz"
            done.append(Correction.CUNIT_FREQ)
        if ctype.startswith("RA") and f"CRVAL{n}" in h:
            crval = float(h[f"CRVAL{n}"])
            if not 0.0 <= crval < 360.0:
                h[f"CRVAL{n}"] = math.fmod(crval, 360.0) + (360.0 if crval < 0 else 0.0)
                done.append(Correction.RA_WRAPPED)
    if radio:
        bunit = str(h.get("BUNIT", "")).strip()
        if not bunit:
            h["BUNIT"] = "Jy/beam"
            done.append(Correction.BUNIT_MISSING)
        elif bunit.upper() == "JY/BEAM" and bunit != "Jy/beam":
            h["BUNIT"] = "Jy/beam"
            done.append(Correction.BUNIT_CANONICAL)
    return h, tuple(sorted(set(done)))


def header_time(header: fits.Header, *, where: str) -> Time:
    """Observation start from ``DATE-OBS`` (UTC; ``TIMESYS`` honoured when given)."""
    value = header.get("DATE-OBS")
    if not value:
        raise InputFileError(
            f"{where}: header has no DATE-OBS, so the file cannot be placed on the time axis; "
            "add DATE-OBS (ISO 8601, UTC) to the header."
        )
    scale = str(header.get("TIMESYS", "UTC")).strip().lower() or "utc"
    try:
        return Time(str(value).strip(), format="isot", scale=scale).utc
    except ValueError as exc:
        raise InputFileError(
            f"{where}: DATE-OBS={value!r} is not an ISO 8601 time ({exc}); "
            "write it as YYYY-MM-DDThh:mm:ss[.s]."
        ) from exc


def beam(header: fits.Header) -> tuple[float, float, float]:
    """Restoring beam (BMAJ, BMIN, BPA) in degrees; NaN for missing keywords."""
    return tuple(float(header.get(k, math.nan)) for k in ("BMAJ", "BMIN", "BPA"))  # type: ignore[return-value]
