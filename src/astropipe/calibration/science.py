"""Calibrating science frames and writing calibrated frames and masters as FITS.

A calibrated frame is ``(raw - overscan)[trim] · gain - bias - dark · t``, divided by the flat,
in electrons, written with three image extensions: ``SCI`` (float32), ``ERR`` (float32, one
standard deviation) and ``MASK`` (uint8 bits, see :data:`MASK_BITS`). The primary header keeps
the raw header (DATE-OBS, FILTER, EXPTIME, OBJECT, WCS with CRPIX shifted by the trim) and
adds HISTORY cards naming each master and its SHA-256. Nothing time-dependent is written, so
the same inputs give byte-identical files.
"""

from __future__ import annotations

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
    SATURATED,
    flat_bad_pixels,
    flat_correct,
    science_error,
    subtract_bias,
    subtract_dark,
)
from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.cosmics import detect_cosmics
from astropipe.calibration.frames import FrameInfo, read_region
from astropipe.calibration.masters import Master, band_loader, detector_for

__all__ = ["Calibrated", "calibrate_frame", "output_header", "write_science", "write_master"]

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


def calibrate_frame(
    info: FrameInfo,
    cfg: CalibrationConfig,
    *,
    bias: Master,
    flat: Master,
    dark: Master | None = None,
) -> Calibrated:
    """Calibrate one science frame with its masters; flag saturation, bad flat and cosmic rays."""
    det = detector_for(info, cfg.detector)
    rows = info.trimmed_shape[0]
    electrons = band_loader(info, det, cfg.overscan)(0, rows)
    ys, xs = info.trimsec.slices if info.trimsec else (slice(None), slice(None))
    raw = read_region(info, ys, xs)
    t = info.exptime or 0.0
    signal = subtract_bias(electrons, bias.data)
    if dark is not None:
        signal = subtract_dark(signal, dark.data, t)
    sci = flat_correct(signal, flat.data)
    err = science_error(
        signal,
        read_noise_e=det.read_noise,
        flat=flat.data,
        dark=dark.data if dark is not None else None,
        bias_err=bias.err,
        dark_err=dark.err if dark is not None else None,
        exptime=t,
        flat_err=flat.err,
    )
    mask = np.zeros(sci.shape, dtype=np.uint8)
    mask[raw >= det.saturation] |= SATURATED
    mask[flat_bad_pixels(flat.data, low=cfg.flat.bad_low, high=cfg.flat.bad_high)] |= BAD_FLAT
    if cfg.cosmics.enabled:
        cr = detect_cosmics(
            sci,
            err=err,
            read_noise=det.read_noise,
            saturation=det.saturation * det.gain,
            bad=mask != 0,
            cfg=cfg.cosmics,
        )
        mask[cr] |= COSMIC_RAY
    return Calibrated(info, sci.astype(np.float32), err.astype(np.float32), mask, det.read_noise)


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
        head.add_history(f"{role} master: {master.name}.fits")
        head.add_history(f"sha256 {sha}")
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
    head["IMAGETYP"] = (f"MASTER {master.spec.kind.upper()}", "astropipe calibrate_images")
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
