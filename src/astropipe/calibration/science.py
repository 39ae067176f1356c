"""Calibrating science frames and writing calibrated frames and masters as FITS.

A calibrated frame is ``(raw - overscan)[trim] · gain - bias - dark · t``, divided by the flat,
in electrons, written with three image extensions: ``SCI`` (float32), ``ERR`` (float32, one
standard deviation) and ``MASK`` (uint8 bits, see :data:`MASK_BITS`). The primary header keeps
the raw header (DATE-OBS, FILTER, EXPTIME, OBJECT, WCS with CRPIX shifted by the trim) and
adds HISTORY cards naming each master and its SHA-256. Nothing time-dependent is written, so
the same inputs give byte-identical files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from astropipe.calibration.calibrate import (
    BAD_FLAT,
    COSMIC_RAY,
    MASK_BITS,
    NONFINITE,
    SATURATED,
    flat_bad_pixels,
    flat_correct,
    master_history,
    master_imagetyp,
    science_error,
    subtract_bias,
    subtract_dark,
)
from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.cosmics import detect_cosmics_banded
from astropipe.calibration.frames import FrameInfo, read_region
from astropipe.calibration.masters import Master, band_loader, detector_for

__all__ = [
    "Calibrated",
    "calibrate_frame",
    "science_band_rows",
    "output_header",
    "write_science",
    "write_master",
]

log = logging.getLogger(__name__)

#: Keywords never copied from a raw header: structure, scaling, and sections that the trim
#: made wrong.
_DROP = {
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "EXTEND",
    "BZERO",
    "BSCALE",
    "BLANK",
    "XTENSION",
    "PCOUNT",
    "GCOUNT",
    "EXTNAME",
    "BIASSEC",
    "TRIMSEC",
    "DATASEC",
    "CCDSEC",
    "CHECKSUM",
    "DATASUM",
    "BUNIT",
    "HISTORY",
    "COMMENT",
    "",
}


@dataclass
class Calibrated:
    """A calibrated science frame."""

    frame: FrameInfo
    sci: np.ndarray
    err: np.ndarray
    mask: np.ndarray
    read_noise: float

    @property
    def cosmic_pixels(self) -> int:
        """Number of pixels flagged as cosmic rays."""
        return int(np.count_nonzero(self.mask & COSMIC_RAY))


#: Bytes of working memory per pixel of a band while it is calibrated: the float64 raw,
#: electrons, signal, SCI and the temporaries of the error propagation (measured peak ~13
#: float64 arrays), plus astroscrappy's float32 planes, including its 2x-subsampled Laplacian.
_BYTES_PER_BAND_PIXEL = 128

#: Fewest rows per band, whatever the budget: progress with a tiny memory limit.
_MIN_BAND_ROWS = 128


def science_band_rows(
    shape: tuple[int, int], *, budget_bytes: int, held_bytes: int = 0, margin: int = 0
) -> int:
    """Rows per band so one band (with its ``margin`` rows each side) fits the budget.

    ``held_bytes`` is what is already spoken for (the process, the masters, the output planes);
    the band gets what remains, at least :data:`_MIN_BAND_ROWS` rows.
    """
    rows, cols = shape
    free = max(budget_bytes - held_bytes, 0)
    fit = free // (_BYTES_PER_BAND_PIXEL * max(cols, 1)) - 2 * margin
    return int(min(rows, max(fit, _MIN_BAND_ROWS)))


def calibrate_frame(
    info: FrameInfo,
    cfg: CalibrationConfig,
    *,
    bias: Master,
    flat: Master,
    dark: Master | None = None,
    band_rows: int | None = None,
) -> Calibrated:
    """Calibrate one science frame with its masters; flag saturation, bad flat, NaN/inf pixels
    and cosmic rays.

    The frame is processed in bands of ``band_rows`` rows (None: the whole frame at once);
    every step is per pixel, so the result does not depend on the band height. Cosmic rays are
    found on overlapping bands (see :func:`~astropipe.calibration.cosmics.detect_cosmics_banded`).
    Pixels whose raw value or calibrated value is NaN or infinite keep SCI = NaN, get ERR = 0
    and the MASK bit ``NONFINITE``; they are kept out of the cosmic-ray detection.
    """
    det = detector_for(info, cfg.detector)
    rows, cols = info.trimmed_shape
    step = rows if band_rows is None else max(int(band_rows), 1)
    load = band_loader(info, det, cfg.overscan)
    ys, xs = info.trimsec.slices if info.trimsec else (slice(0, rows), slice(None))
    t = info.exptime or 0.0
    sci_out = np.empty((rows, cols), dtype=np.float32)
    err_out = np.empty((rows, cols), dtype=np.float32)
    mask = np.zeros((rows, cols), dtype=np.uint8)
    for r0 in range(0, rows, step):
        r1 = min(r0 + step, rows)
        electrons = load(r0, r1)
        raw = read_region(info, slice(ys.start + r0, ys.start + r1), xs)
        b = bias.data[r0:r1]
        f = flat.data[r0:r1]
        signal = subtract_bias(electrons, b)
        del electrons
        if dark is not None:
            signal = subtract_dark(signal, dark.data[r0:r1], t)
        sci = flat_correct(signal, f)
        err = science_error(
            signal,
            read_noise_e=det.read_noise,
            flat=f,
            dark=dark.data[r0:r1] if dark is not None else None,
            bias_err=bias.err[r0:r1],
            dark_err=dark.err[r0:r1] if dark is not None else None,
            exptime=t,
            flat_err=flat.err[r0:r1],
        )
        del signal
        band = mask[r0:r1]
        band[raw >= det.saturation] |= SATURATED
        band[flat_bad_pixels(f, low=cfg.flat.bad_low, high=cfg.flat.bad_high)] |= BAD_FLAT
        bad = ~(np.isfinite(raw) & np.isfinite(sci))
        if bad.any():
            band[bad] |= NONFINITE
            sci[bad] = np.nan  # an inf is as unknown as a NaN
            err[bad] = 0.0  # ERR stays finite (the validation contract); MASK says why
        sci_out[r0:r1] = sci
        err_out[r0:r1] = err
        del raw, sci, err, bad
    n_bad = int(np.count_nonzero(mask & NONFINITE))
    if n_bad:
        log.warning(
            "%s: %d NaN/inf pixel(s) (%.3g%%) flagged NONFINITE in MASK",
            info.path, n_bad, 100.0 * n_bad / mask.size,
        )  # fmt: skip
    if cfg.cosmics.enabled:
        cr = detect_cosmics_banded(
            sci_out,
            err=err_out,
            read_noise=det.read_noise,
            saturation=det.saturation * det.gain,
            bad=mask != 0,
            cfg=cfg.cosmics,
            band_rows=step,
        )
        mask[cr] |= COSMIC_RAY
    return Calibrated(info, sci_out, err_out, mask, det.read_noise)


def output_header(info: FrameInfo) -> fits.Header:
    """The raw header without structural keywords, with the WCS shifted by the trim."""
    out = fits.Header()
    for card in info.header.cards:
        if card.keyword not in _DROP:
            out.append(card.copy() if hasattr(card, "copy") else fits.Card(*card))
    if info.trimsec is not None:
        for axis, offset in ((1, info.trimsec.x0), (2, info.trimsec.y0)):
            key = f"CRPIX{axis}"
            if key in out and offset:
                out[key] = float(out[key]) - offset
    return out


def _wcs_only(header: fits.Header) -> fits.Header:
    keep = (
        "WCSAXES",
        "CTYPE",
        "CRPIX",
        "CRVAL",
        "CDELT",
        "CUNIT",
        "CD1_",
        "CD2_",
        "PC1_",
        "PC2_",
        "CROTA",
        "EQUINOX",
        "RADESYS",
        "LONPOLE",
        "LATPOLE",
    )
    return fits.Header([c for c in header.cards if c.keyword.startswith(keep)])


def _finish(hdul: fits.HDUList, path: Path) -> None:
    for hdu in hdul:
        # A fixed comment instead of astropy's default (the current time) keeps files identical.
        hdu.add_checksum(when="astropipe")
    hdul.writeto(path, overwrite=False, output_verify="exception")


def write_science(
    cal: Calibrated, path: str | os.PathLike[str], *, masters: Mapping[str, tuple[Master, str]]
) -> None:
    """Write a calibrated frame; ``masters`` maps role → (master, SHA-256 of its file)."""
    head = output_header(cal.frame)
    head["BUNIT"] = ("electron", "SCI and ERR are in electrons")
    head["GAIN"] = (1.0, "[e-/ADU] frame already converted to electrons")
    head["RDNOISE"] = (cal.read_noise, "[e-] read noise of the raw frame")
    head["CALSTAT"] = ("OBDF", "overscan, bias, dark, flat applied")
    head["RAWFILE"] = (cal.frame.name, "raw frame this was calibrated from")
    for name, bit in MASK_BITS.items():
        head[f"MASKB{bit}"] = (name, f"MASK bit value {bit}")
    for role, (master, sha) in sorted(masters.items()):
        for card in master_history(role, f"{master.name}.fits", sha):
            head.add_history(card)
    head["NCOSMIC"] = (cal.cosmic_pixels, "pixels flagged as cosmic rays (MASK bit 4)")
    primary = fits.PrimaryHDU(header=head)
    sci = fits.ImageHDU(cal.sci, header=head.copy(), name="SCI")
    wcs = _wcs_only(head)
    err = fits.ImageHDU(cal.err, header=wcs.copy(), name="ERR")
    err.header["BUNIT"] = "electron"
    mask = fits.ImageHDU(cal.mask, header=wcs.copy(), name="MASK")
    for name, bit in MASK_BITS.items():
        mask.header[f"MASKB{bit}"] = (name, f"bit value {bit}")
    _finish(fits.HDUList([primary, sci, err, mask]), Path(path))


def write_master(
    master: Master, path: str | os.PathLike[str], *, inputs: Mapping[str, str]
) -> None:
    """Write a master frame (primary = data, ``ERR`` extension); ``inputs`` maps file → SHA-256."""
    first = master.spec.frames[0]
    head = fits.Header()
    head["IMAGETYP"] = (master_imagetyp(master.spec.kind), "astropipe calibrate_images")
    head["INSTRUME"] = first.instrument
    head["XBINNING"], head["YBINNING"] = first.binning
    if master.spec.filter is not None:
        head["FILTER"] = master.spec.filter
    units = {"bias": "electron", "dark": "electron/s", "flat": ""}
    head["BUNIT"] = units[master.spec.kind]
    head["NCOMBINE"] = (master.ncombine, "frames combined")
    if master.spec.kind == "flat":
        head["FLATNORM"] = (master.norm, "median of the combined unit-median flats")
    for name, sha in sorted(inputs.items()):
        head.add_history(f"input: {name}")
        head.add_history(f"sha256 {sha}")
    primary = fits.PrimaryHDU(master.data, header=head)
    err = fits.ImageHDU(master.err, name="ERR")
    err.header["BUNIT"] = units[master.spec.kind]
    _finish(fits.HDUList([primary, err]), Path(path))
