"""Frame discovery and classification from FITS headers.

Cameras spell the frame type many ways (``IMAGETYP`` for MaxIm DL/ACP/SBIG, ``OBSTYPE`` for
NOAO/IRAF-style instruments). :data:`FRAME_TYPES` maps every known spelling, compared
case-insensitively with surrounding blanks removed, to one of ``bias``, ``dark``, ``flat``,
``science``. Frames are grouped by instrument and binning (and filter for flats and science).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from astropipe.calibration.sections import Section, parse_section
from astropipe.errors import InputFileError, MissingInputError

__all__ = [
    "FRAME_TYPES",
    "FrameInfo",
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


def _binning(header: fits.Header) -> tuple[int, int]:
    """``(xbin, ybin)`` from XBINNING/YBINNING, CCDSUM ("1 1") or BINNING ("2x2"); default 1x1."""
    if "XBINNING" in header or "YBINNING" in header:
        return int(header.get("XBINNING", 1)), int(header.get("YBINNING", 1))
    for key, sep in (("CCDSUM", None), ("BINNING", "x")):
        value = header.get(key)
        if isinstance(value, str):
            parts = value.lower().split(sep)
            if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
                return int(parts[0]), int(parts[1])
    return 1, 1


@dataclass(frozen=True)
class RawLayout:
    """Where and how an uncompressed image's pixels sit in its file (for direct row reads)."""

    offset: int
    dtype: str
    bscale: float
    bzero: float
    blank: int | None


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
    layout: RawLayout | None = None

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


def _check_complete(hdul: fits.HDUList, index: int, path: Path) -> None:
    """Raise when the data unit of HDU ``index`` extends past the end of the file."""
    info = hdul.fileinfo(index)
    h = hdul[index].header
    need = abs(int(h["BITPIX"])) // 8 * int(h["NAXIS1"]) * int(h["NAXIS2"])
    size = os.path.getsize(path)
    if info is None or info["datLoc"] + need > size:
        raise InputFileError(
            f"{path}: truncated FITS (data unit needs {need} bytes, file has "
            f"{size - (info['datLoc'] if info else 0)}); re-copy or re-download the file."
        )


_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _layout(hdul: fits.HDUList, index: int) -> RawLayout | None:
    hdu = hdul[index]
    if isinstance(hdu, fits.CompImageHDU):
        return None
    h = hdu.header
    blank = h.get("BLANK") if int(h["BITPIX"]) > 0 else None
    return RawLayout(
        offset=int(hdul.fileinfo(index)["datLoc"]),
        dtype=_DTYPES[int(h["BITPIX"])],
        bscale=float(h.get("BSCALE", 1.0)),
        bzero=float(h.get("BZERO", 0.0)),
        blank=int(blank) if blank is not None else None,
    )


def read_info(path: str | os.PathLike[str]) -> FrameInfo | None:
    """Read and classify one frame's header; None when it is not a recognised CCD frame type.

    Raises
    ------
    InputFileError
        When the file is not readable FITS, is truncated, or has a malformed section keyword.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # A truncated file is reported below as one clear error, not as astropy's warning.
            warnings.simplefilter("ignore", AstropyUserWarning)
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
        with hdul:
            index = _image_hdu(hdul, path)
            _check_complete(hdul, index, path)
            header = hdul[index].header.copy()
            layout = _layout(hdul, index)
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
    exptime = header.get("EXPTIME", header.get("EXPOSURE"))
    filt = header.get("FILTER")
    return FrameInfo(
        path=path,
        kind=kind,
        instrument=str(header.get("INSTRUME", "unknown")).strip() or "unknown",
        binning=_binning(header),
        filter=str(filt).strip() if filt is not None else None,
        exptime=float(exptime) if exptime is not None else None,
        shape=shape,
        hdu=index,
        biassec=biassec,
        trimsec=trimsec,
        header=header,
        layout=layout,
    )


def discover(
    directory: str | os.PathLike[str], *, patterns: Sequence[str] = ("*.fits", "*.fit", "*.fts")
) -> tuple[list[FrameInfo], list[Path]]:
    """Find and classify every frame under ``directory`` (not recursive), sorted by name.

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
        info = read_info(path)
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
    lay = info.layout
    if lay is not None:
        r0, r1, step = rows.indices(info.shape[0])
        if step == 1:
            dtype = np.dtype(lay.dtype)
            width = info.shape[1]
            with open(info.path, "rb") as fh:
                fh.seek(lay.offset + r0 * width * dtype.itemsize)
                buf = fh.read(max(r1 - r0, 0) * width * dtype.itemsize)
            raw = np.frombuffer(buf, dtype=dtype).reshape(max(r1 - r0, 0), width)
            if cols is not None:
                raw = raw[:, cols]
            out = np.empty(raw.shape, dtype=np.float64)
            if lay.bscale != 1.0:
                np.multiply(raw, lay.bscale, out=out, dtype=np.float64)
                out += lay.bzero
            else:
                # One pass: convert and add the offset (e.g. BZERO=32768 for unsigned 16-bit).
                np.add(raw, lay.bzero, out=out, dtype=np.float64)
            if lay.blank is not None:
                out[raw == lay.blank] = np.nan
            return out
    with fits.open(info.path, memmap=False, lazy_load_hdus=True) as hdul:
        data = hdul[info.hdu].section[rows, cols if cols is not None else slice(None)]
    return np.asarray(data, dtype=np.float64)


def read_rows(info: FrameInfo, r0: int, r1: int) -> np.ndarray:
    """Rows ``[r0, r1)`` of the raw image (all columns), float64."""
    return read_region(info, slice(r0, r1))


def by_kind(frames: Iterable[FrameInfo]) -> dict[str, list[FrameInfo]]:
    """Split frames by kind, keeping the name order; every kind present as a key."""
    out: dict[str, list[FrameInfo]] = {k: [] for k in KINDS}
    for f in frames:
        out[f.kind].append(f)
    return out
