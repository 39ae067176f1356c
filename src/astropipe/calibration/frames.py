"""Frame discovery and classification from FITS headers.

Cameras spell the frame type many ways (``IMAGETYP`` for MaxIm DL/ACP/SBIG, ``OBSTYPE`` for
NOAO/IRAF-style instruments). :data:`FRAME_TYPES` maps every known spelling, compared
case-insensitively with surrounding blanks removed, to one of ``bias``, ``dark``, ``flat``,
``science``. Frames are grouped by instrument and binning (and filter for flats and science).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from astropipe.calibration.sections import Section, parse_section
from astropipe.errors import InputFileError, MissingInputError
from astropipe.io import fits as fitsio

__all__ = [
    "FRAME_TYPES",
    "FrameInfo",
    "HeaderValueError",
    "classify",
    "read_info",
    "discover",
    "read_rows",
    "read_region",
]

log = logging.getLogger(__name__)

#: Header spelling (lower case) → frame kind.
FRAME_TYPES: dict[str, str] = {
    "bias": "bias",
    "bias frame": "bias",
    "zero": "bias",
    "dark": "dark",
    "dark frame": "dark",
    "flat": "flat",
    "flat field": "flat",
    "flat frame": "flat",
    "flatfield": "flat",
    "dome flat": "flat",
    "domeflat": "flat",
    "sky flat": "flat",
    "skyflat": "flat",
    "twilight flat": "flat",
    "light": "science",
    "light frame": "science",
    "object": "science",
    "science": "science",
}

KINDS = ("bias", "dark", "flat", "science")

#: Keywords that carry the frame type, in order of preference.
TYPE_KEYWORDS = ("IMAGETYP", "OBSTYPE")


def classify(header: fits.Header) -> str | None:
    """Return ``bias``, ``dark``, ``flat`` or ``science`` from IMAGETYP/OBSTYPE, or None."""
    for key in TYPE_KEYWORDS:
        value = header.get(key)
        if isinstance(value, str) and value.strip():
            return FRAME_TYPES.get(" ".join(value.strip().lower().split()))
    return None


class HeaderValueError(InputFileError):
    """A header keyword the pipeline reads has a value it cannot use (e.g. ``EXPTIME='abc'``).

    ``kind`` is the frame's kind (``science``, ``bias``, ...), so a caller can quarantine a
    science frame and stop on a calibration frame.
    """

    def __init__(self, message: str, *, path: Path, kind: str) -> None:
        super().__init__(message)
        self.path = path
        self.kind = kind


def _number(
    header: fits.Header, key: str, path: Path, kind: str, *, integer: bool = False
) -> float:
    """The value of ``key`` as a finite number (``integer``: a whole number >= 1)."""
    value = header[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if (
        isinstance(value, bool)
        or not np.isfinite(number)
        or (integer and (number < 1 or number != int(number)))
    ):
        expected = "a whole number >= 1" if integer else "a finite number"
        raise HeaderValueError(
            f"{path}: header keyword {key}={value!r} is not {expected}; fix the keyword in "
            f"this {kind} frame's header, or move the file out of the input directory.",
            path=path,
            kind=kind,
        )
    return number


def _binning(header: fits.Header, path: Path, kind: str) -> tuple[int, int]:
    """``(xbin, ybin)`` from XBINNING/YBINNING, CCDSUM ("1 1") or BINNING ("2x2"); default 1x1."""
    if "XBINNING" in header or "YBINNING" in header:
        return tuple(  # type: ignore[return-value]
            int(_number(header, k, path, kind, integer=True)) if k in header else 1
            for k in ("XBINNING", "YBINNING")
        )
    for key, sep in (("CCDSUM", None), ("BINNING", "x")):
        value = header.get(key)
        if isinstance(value, str):
            parts = value.lower().split(sep)
            if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
                return int(parts[0]), int(parts[1])
    return 1, 1


@dataclass(frozen=True)
class FrameInfo:
    """What the pipeline needs to know about one raw frame (nothing of its pixels)."""

    path: Path
    kind: str
    instrument: str
    binning: tuple[int, int]
    filter: str | None
    exptime: float | None
    shape: tuple[int, int]
    hdu: int
    biassec: Section | None
    trimsec: Section | None
    header: fits.Header
    layout: fitsio.PixelLayout | None = None  # None: tile-compressed (read via astropy)

    @property
    def name(self) -> str:
        """File name, for messages and output names."""
        return self.path.name

    @property
    def group(self) -> tuple[str, tuple[int, int]]:
        """Instrument and binning: frames that share masters."""
        return self.instrument, self.binning

    @property
    def trimmed_shape(self) -> tuple[int, int]:
        """Shape after trimming (the whole frame when there is no TRIMSEC)."""
        return self.trimsec.shape if self.trimsec is not None else self.shape


def _image_hdu(hdul: fits.HDUList, path: Path) -> int:
    for i, hdu in enumerate(hdul):
        if hdu.header.get("NAXIS", 0) == 2 and not hdu.header.get("XTENSION") == "BINTABLE":
            return i
    raise InputFileError(f"{path}: no 2-D image HDU found; expected a CCD frame.")


def _layout(hdul: fits.HDUList, index: int, path: Path) -> fitsio.PixelLayout | None:
    hdu = hdul[index]
    if isinstance(hdu, fits.CompImageHDU):
        return None
    return fitsio.PixelLayout.of(hdu.header, int(hdul.fileinfo(index)["datLoc"]), path)


def read_info(path: str | os.PathLike[str]) -> FrameInfo | None:
    """Read and classify one frame's header; None when it is not a recognised CCD frame type.

    Raises
    ------
    HeaderValueError
        When EXPTIME/EXPOSURE, XBINNING/YBINNING (or CRPIXn of a trimmed frame) is not a
        usable number; the message names the file and the keyword.
    InputFileError
        When the file is not readable FITS, is truncated, or has a malformed section keyword.
    """
    path = Path(path)
    try:
        # every data unit checked against the file size: a truncated file is one clear error
        with fitsio.open_fits(path, memmap=False) as hdul:
            index = _image_hdu(hdul, path)
            header = hdul[index].header.copy()
            layout = _layout(hdul, index, path)
            if index > 0:
                # Keywords such as IMAGETYP often sit in the primary header of MEF files.
                primary = hdul[0].header
                for card in primary.cards:
                    if card.keyword not in header and card.keyword not in ("SIMPLE", "EXTEND"):
                        header.append(card)
    except InputFileError:
        raise
    except (OSError, ValueError, KeyError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(
            f"{path}: not a readable FITS file ({first}); re-copy or re-download it."
        ) from None
    kind = classify(header)
    if kind is None:
        return None
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    biassec = (
        parse_section(header["BIASSEC"], shape, where=f"{path}: BIASSEC")
        if "BIASSEC" in header
        else None
    )
    trimsec = (
        parse_section(header["TRIMSEC"], shape, where=f"{path}: TRIMSEC")
        if "TRIMSEC" in header
        else None
    )
    exptime_key = next((k for k in ("EXPTIME", "EXPOSURE") if k in header), None)
    exptime = _number(header, exptime_key, path, kind) if exptime_key else None
    if trimsec is not None:  # shifted by the trim in the calibrated frame's WCS
        for key in ("CRPIX1", "CRPIX2"):
            if key in header:
                _number(header, key, path, kind)
    filt = header.get("FILTER")
    return FrameInfo(
        path=path,
        kind=kind,
        instrument=str(header.get("INSTRUME", "unknown")).strip() or "unknown",
        binning=_binning(header, path, kind),
        filter=str(filt).strip() if filt is not None else None,
        exptime=exptime,
        shape=shape,
        hdu=index,
        biassec=biassec,
        trimsec=trimsec,
        header=header,
        layout=layout,
    )


def discover(
    directory: str | os.PathLike[str],
    *,
    patterns: Sequence[str] = ("*.fits", "*.fit", "*.fts"),
    quarantine: dict[Path, str] | None = None,
) -> tuple[list[FrameInfo], list[Path]]:
    """Find and classify every frame under ``directory`` (not recursive), sorted by name.

    Parameters
    ----------
    directory, patterns
        Where to look, and the file-name globs.
    quarantine
        When given, a *science* frame whose header has an unusable value
        (:class:`HeaderValueError`) is left out and recorded here (path → message) instead of
        stopping the run: science frames are independent of each other. Calibration frames
        feed every science frame of their group, so their errors always raise.

    Returns
    -------
    frames, skipped
        Classified frames, and files whose IMAGETYP/OBSTYPE is missing or unknown.

    Raises
    ------
    MissingInputError
        When the directory does not exist or holds no FITS file.
    """
    root = Path(directory)
    if not root.is_dir():
        raise MissingInputError(
            f"{root}: calibration input directory not found; set calibration.inputs.path."
        )
    paths: set[Path] = set()
    for pattern in patterns:
        paths.update(p for p in root.glob(pattern) if p.is_file())
    if not paths:
        raise MissingInputError(
            f"{root}: no FITS frames matching {list(patterns)}; set calibration.inputs.path."
        )
    frames: list[FrameInfo] = []
    skipped: list[Path] = []
    for path in sorted(paths):
        try:
            info = read_info(path)
        except HeaderValueError as exc:
            if quarantine is None or exc.kind != "science":
                raise
            log.warning("%s (quarantined; the run goes on without it)", exc)
            quarantine[path] = str(exc)
            continue
        if info is None:
            log.warning("%s: IMAGETYP/OBSTYPE missing or not a known frame type; skipped", path)
            skipped.append(path)
        else:
            frames.append(info)
    return frames, skipped


def read_region(info: FrameInfo, rows: slice, cols: slice | None = None) -> np.ndarray:
    """Read rows (and columns) of the raw image as float64, scaled by BSCALE/BZERO.

    Only the requested rows are read from disk (one ``pread`` of the row range for an
    uncompressed image, ``ImageHDU.section`` otherwise), so a band of a large frame costs the
    band, not the frame. Integer pixels equal to BLANK become NaN, as astropy does.
    """
    return fitsio.read_region(info.path, hdu=info.hdu, layout=info.layout, rows=rows, cols=cols)


def read_rows(info: FrameInfo, r0: int, r1: int) -> np.ndarray:
    """Rows ``[r0, r1)`` of the raw image (all columns), float64."""
    return read_region(info, slice(r0, r1))


def by_kind(frames: Iterable[FrameInfo]) -> dict[str, list[FrameInfo]]:
    """Split frames by kind, keeping the name order; every kind present as a key."""
    out: dict[str, list[FrameInfo]] = {k: [] for k in KINDS}
    for f in frames:
        out[f.kind].append(f)
    return out
