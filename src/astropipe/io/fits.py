"""The one FITS pixel reader: BITPIX types, the truncation check, BSCALE/BZERO/BLANK.

Both calibrate_images (raw CCD frames, read a band of rows at a time) and fits_to_zarr (whole
images, hashed and decoded from one read) go through this module, so a file is judged
truncated, and its stored integers become physical values, the same way everywhere:

* the size of a data unit is the FITS standard's ``|BITPIX|/8 · GCOUNT · (PCOUNT + ΠNAXISn)``
  (FITS 4.0, section 4.4.1.1), compared with the file size before any pixel is read;
* physical values are ``raw · BSCALE + BZERO`` computed in float64 (FITS 4.0, section 5.3),
  and an integer pixel equal to ``BLANK`` becomes NaN. Float pixels keep their NaN and inf.

Every error names the file and says what to do.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from astropipe.errors import InputFileError
from astropipe.provenance import sha256_bytes

__all__ = [
    "BITPIX_DTYPES",
    "Scaling",
    "PixelLayout",
    "Known",
    "pixel_dtype",
    "data_nbytes",
    "header_int",
    "check_complete",
    "open_fits",
    "read_hdu_pixels",
    "read_primary_header",
    "read_primary",
    "known_layout",
    "read_known",
    "read_region",
    "read_stored",
    "physical",
]

# Serialises the warning filter swap in open_fits (warnings.catch_warnings is not thread-safe).
_WARNINGS_LOCK = threading.Lock()

#: BITPIX → big-endian numpy dtype of the stored pixels (FITS 4.0, table 8).
BITPIX_DTYPES: dict[int, str] = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _not_fits(path: Path, exc: BaseException) -> InputFileError:
    return InputFileError(
        f"{path}: not a readable FITS file ({_first_line(exc)}); re-copy or re-download it."
    )


def pixel_dtype(bitpix: object, path: Path | str) -> str:
    """The numpy dtype of BITPIX ``bitpix``; InputFileError naming ``path`` if it is not valid."""
    try:
        return BITPIX_DTYPES[int(bitpix)]  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        raise InputFileError(
            f"{path}: BITPIX={bitpix!r} is not a FITS pixel type; expected one of "
            f"{sorted(BITPIX_DTYPES)} — re-copy or re-download the file."
        ) from None


def header_int(header: fits.Header, key: str, where: str, *, default: int | None = None) -> int:
    """The integer value of ``key``; an InputFileError naming ``where`` if it is not one."""
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputFileError(
            f"{where}: header {key}={value!r} is not an integer; the file is damaged — "
            "re-download it."
        )
    return int(value)


def data_nbytes(header: fits.Header, where: str = "FITS header") -> int:
    """Bytes of the data unit ``header`` describes, without the padding to 2880.

    Raises
    ------
    InputFileError
        When BITPIX, NAXIS, NAXISn, PCOUNT or GCOUNT are missing or not valid FITS values
        (``where`` names the file and HDU in the message).
    """
    bitpix = header_int(header, "BITPIX", where)
    pixel_dtype(bitpix, where)  # refuses a BITPIX that is not a FITS pixel type
    naxis = header_int(header, "NAXIS", where)
    if not 0 <= naxis <= 999:
        raise InputFileError(f"{where}: NAXIS={naxis} is not in 0..999; re-download it.")
    if naxis == 0:
        return 0
    axes = [header_int(header, f"NAXIS{k}", where) for k in range(1, naxis + 1)]
    if any(n < 0 for n in axes):
        raise InputFileError(f"{where}: a NAXISn is negative ({axes}); re-download it.")
    if axes[0] == 0 and header.get("GROUPS"):  # random groups: NAXIS1 = 0 is not an axis
        axes = axes[1:]
    count = 1
    for n in axes:
        count *= n
    pcount = header_int(header, "PCOUNT", where, default=0)
    gcount = header_int(header, "GCOUNT", where, default=1)
    if pcount < 0 or gcount < 0:
        raise InputFileError(f"{where}: PCOUNT/GCOUNT negative; re-download it.")
    return abs(bitpix) // 8 * gcount * (pcount + count)


@dataclass(frozen=True)
class Scaling:
    """BSCALE, BZERO and (integer images only) BLANK of one HDU."""

    bscale: float = 1.0
    bzero: float = 0.0
    blank: int | None = None

    @classmethod
    def of(cls, header: fits.Header, path: Path) -> Scaling:
        """Read the scaling keywords; a non-numeric one is an InputFileError naming it."""
        values: list[float] = []
        for key, default in (("BSCALE", 1.0), ("BZERO", 0.0)):
            try:
                values.append(float(header.get(key, default)))
            except (TypeError, ValueError):
                raise InputFileError(
                    f"{path}: {key}={header.get(key)!r} is not a number; fix the header."
                ) from None
        blank = None
        if int(header.get("BITPIX", 0)) > 0 and header.get("BLANK") is not None:
            try:
                blank = int(header["BLANK"])
            except (TypeError, ValueError):
                raise InputFileError(
                    f"{path}: BLANK={header['BLANK']!r} is not an integer; fix the header."
                ) from None
        return cls(bscale=values[0], bzero=values[1], blank=blank)

    @property
    def identity(self) -> bool:
        """True when the stored values are the physical values."""
        return self.bscale == 1.0 and self.bzero == 0.0 and self.blank is None


@dataclass(frozen=True)
class PixelLayout:
    """Where and how an uncompressed image's pixels sit in its file."""

    offset: int  # byte offset of the data unit
    dtype: str  # stored (big-endian) dtype
    shape: tuple[int, ...]  # numpy order (NAXISn … NAXIS1)
    scaling: Scaling

    @classmethod
    def of(cls, header: fits.Header, offset: int, path: Path) -> PixelLayout:
        """The layout of an image HDU whose data unit starts at ``offset``."""
        naxis = int(header.get("NAXIS", 0))
        return cls(
            offset=int(offset),
            dtype=pixel_dtype(header.get("BITPIX"), path),
            shape=tuple(int(header[f"NAXIS{k}"]) for k in range(naxis, 0, -1)),
            scaling=Scaling.of(header, path),
        )

    @property
    def count(self) -> int:
        """Number of pixels."""
        n = 1
        for s in self.shape:
            n *= s
        return n if self.shape else 0


def physical(
    raw: np.ndarray, scaling: Scaling, *, dtype: type[np.floating] | None = None
) -> np.ndarray:
    """Stored pixels → physical values: ``raw · BSCALE + BZERO`` in float64, BLANK → NaN.

    Parameters
    ----------
    raw
        The stored pixels (any byte order).
    scaling
        BSCALE, BZERO, BLANK of the HDU.
    dtype
        Result type. None: float32 for integer or scaled images, and an unscaled float image
        returned unchanged (no copy). A float type: always that type.

    Returns
    -------
    numpy.ndarray
        New array (or ``raw`` itself, see ``dtype``); NaN and inf of float images are kept.
    """
    if dtype is None and raw.dtype.kind == "f" and scaling.identity:
        return raw
    out = np.empty(raw.shape, dtype=np.float64)
    # the same float64 result either way; one pass saves a temporary for the common BSCALE=1
    if scaling.bscale != 1.0:
        np.multiply(raw, scaling.bscale, out=out, dtype=np.float64)
        out += scaling.bzero
    else:
        np.add(raw, scaling.bzero, out=out, dtype=np.float64)
    if scaling.blank is not None and raw.dtype.kind in "iu":
        out[raw == scaling.blank] = np.nan
    want = np.float32 if dtype is None else dtype
    return out if want is np.float64 else out.astype(want)


def check_complete(hdul: fits.HDUList, path: Path, indices: Iterable[int] | None = None) -> None:
    """Raise InputFileError when a data unit of ``hdul`` ends past the end of the file.

    Parameters
    ----------
    indices
        The HDUs to check; every HDU by default.
    """
    size = os.path.getsize(path)
    for i in range(len(hdul)) if indices is None else indices:
        info = hdul.fileinfo(i)
        if info is None:  # not read from a file
            continue
        header = hdul[i].header
        if isinstance(hdul[i], fits.CompImageHDU):  # .header is the image, not the table on disk
            with open(path, "rb") as fh:
                fh.seek(int(info["hdrLoc"]))
                header = fits.Header.fromfile(fh)
        needed = int(info["datLoc"]) + data_nbytes(header, f"{path} (HDU {i})")
        if needed > size:
            raise InputFileError(
                f"{path}: FITS file is truncated (HDU {i} needs {needed} bytes, the file has "
                f"{size}); re-copy or re-download it."
            )


@contextmanager
def open_fits(path: Path, *, memmap: bool = True) -> Iterator[fits.HDUList]:
    """Open ``path`` read-only, every header parsed and every data unit checked for truncation.

    Raises
    ------
    InputFileError
        When the file is not FITS, has a damaged header, or is truncated.
    """
    try:
        # truncation is reported below as one clear error, not as astropy's warning;
        # catch_warnings swaps process-global state, so two threads opening files at once
        # would restore each other's filters (leaving "ignore" installed, or dropping it):
        # one open at a time in here
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            hdul = fits.open(path, memmap=memmap, lazy_load_hdus=False, mode="readonly")
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise _not_fits(path, exc) from None
    try:
        try:
            check_complete(hdul, path)
        # AttributeError: astropy's _CorruptedHDU has no fileinfo (found by test_fuzz)
        except (KeyError, ValueError, TypeError, AttributeError, fits.VerifyError) as exc:
            if isinstance(exc, InputFileError):
                raise
            raise _not_fits(path, exc) from None
        yield hdul
    finally:
        hdul.close()


def read_hdu_pixels(hdu: fits.ImageHDU | fits.PrimaryHDU, path: Path) -> np.ndarray:
    """The HDU's stored pixels (as astropy gives them); InputFileError if there are none."""
    try:
        data = hdu.data
    except (OSError, ValueError, TypeError) as exc:
        raise InputFileError(
            f"{path}: pixel data of HDU {hdu.name!r} cannot be read ({_first_line(exc)}); "
            "re-copy the file."
        ) from None
    if data is None:
        raise InputFileError(f"{path}: HDU {hdu.name!r} has no pixel data; expected an image.")
    return data


def read_primary_header(path: Path) -> tuple[fits.Header, PixelLayout]:
    """The primary header of ``path`` and its pixel layout, after the truncation check.

    Only the header blocks are read (fast); the truncation check compares the size the header
    implies with the file size.

    Raises
    ------
    InputFileError
        When the file is not FITS, the header is damaged, or the data are truncated.
    """
    try:
        with open(path, "rb") as fh:
            header = fits.Header.fromfile(fh)
            offset = fh.tell()
        needed = offset + data_nbytes(header, str(path))
    except InputFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, TypeError, fits.VerifyError) as exc:
        raise _not_fits(path, exc) from None
    size = os.path.getsize(path)
    if needed > size:
        raise InputFileError(
            f"{path}: FITS file is truncated (HDU 0 needs {needed} bytes, the file has "
            f"{size}); re-copy or re-download it."
        )
    try:
        return header, PixelLayout.of(header, offset, path)
    except fits.VerifyError as exc:  # an unparsable BSCALE/BZERO card (found by test_fuzz)
        raise _not_fits(path, exc) from None


def _read_into(path: Path, buffer: bytearray, size: int, start: int = 0) -> memoryview:
    """``size`` bytes of ``path`` from ``start``, read into ``buffer`` (grown as needed)."""
    if len(buffer) < size:
        buffer.extend(bytes(size - len(buffer)))
    view = memoryview(buffer)[:size]
    with open(path, "rb", buffering=0) as fh:
        if start:
            fh.seek(start)
        got = 0
        while got < size:
            n = fh.readinto(view[got:])
            if not n:
                raise InputFileError(
                    f"{path}: file shrank while being read ({start + got} of {start + size} "
                    "bytes); re-copy it and re-run."
                )
            got += n
    return view


def _decode(view: memoryview, layout: PixelLayout, *, start: int = 0) -> np.ndarray:
    raw = np.frombuffer(view, dtype=layout.dtype, count=layout.count, offset=layout.offset - start)
    return raw.reshape(layout.shape)


def read_primary(
    path: Path, buffer: bytearray | None = None
) -> tuple[fits.Header, np.ndarray, str]:
    """Header, physical pixels (see :func:`physical`, ``dtype=None``) and SHA-256 of ``path``.

    The file is read once: the same bytes are hashed and decoded. Pass a ``buffer`` to reuse
    between calls (it grows as needed; float pixels returned without scaling are a view into
    it, valid until the next call).
    """
    header, layout = read_primary_header(path)
    if not layout.shape or min(layout.shape) < 1:  # NAXIS=0 or a zero/negative axis (test_fuzz)
        raise InputFileError(
            f"{path}: the primary HDU holds no image (axes {list(layout.shape)}); expected "
            "an image with NAXIS >= 1 — re-copy or re-download the file."
        )
    size = os.path.getsize(path)
    view = _read_into(path, bytearray(size) if buffer is None else buffer, size)
    return header, physical(_decode(view, layout), layout.scaling), sha256_bytes(view)


def _head_digest(head: bytes | memoryview) -> bytes:
    # only "are the header blocks unchanged since the scan", not a content hash
    return hashlib.blake2b(head, digest_size=16).digest()


class Known(NamedTuple):
    """What the header of a file said when it was scanned: enough to decode its pixels."""

    size: int  # file size in bytes
    head: bytes  # BLAKE2b of the header blocks, to check they are unchanged
    layout: PixelLayout


def known_layout(path: Path, layout: PixelLayout) -> Known:
    """:class:`Known` for ``path`` from the layout :func:`read_primary_header` gave."""
    with open(path, "rb") as fh:
        head = fh.read(layout.offset)
    return Known(size=os.path.getsize(path), head=_head_digest(head), layout=layout)


def read_known(path: Path, buffer: bytearray, known: Known) -> tuple[np.ndarray, str] | None:
    """Physical pixels and SHA-256 of ``path`` whose header was scanned as ``known``.

    Same values as :func:`read_primary` without parsing the header again; None when the
    file's size or header blocks changed since (then use :func:`read_primary`).
    """
    if os.path.getsize(path) != known.size:
        return None
    view = _read_into(path, buffer, known.size)
    if _head_digest(view[: known.layout.offset]) != known.head:
        return None
    data = _decode(view, known.layout)
    return physical(data, known.layout.scaling), sha256_bytes(view)


#: Largest read :func:`read_stored` makes at once when it keeps only some columns: a tall,
#: narrow overscan strip of a 16k frame must not cost the whole frame's rows.
_CHUNK_BYTES = 8 * 2**20


def read_stored(
    path: Path, layout: PixelLayout, rows: slice, cols: slice | None = None
) -> np.ndarray:
    """Stored pixels of rows (and columns) of an uncompressed 2-D image, native byte order.

    Only the requested rows are read from disk, with ``pread`` into the result's own buffer;
    when ``cols`` keeps part of each row, the rows are read in chunks of at most 8 MB, so the
    memory is that of the rows and columns asked for, whatever the image size. No scaling is
    applied (see :func:`physical`).

    Raises
    ------
    InputFileError
        When the file is shorter than the rows need (it shrank since it was checked).
    """
    ny, nx = layout.shape
    r0, r1, step = rows.indices(ny)
    if step != 1:
        raise ValueError("read_stored reads contiguous rows (step 1)")
    n = max(r1 - r0, 0)
    stored = np.dtype(layout.dtype)
    c0, c1 = (0, nx) if cols is None else cols.indices(nx)[:2]
    width = max(c1 - c0, 0)
    out = np.empty((n, width), dtype=stored.newbyteorder("="))
    if n == 0 or width == 0:
        return out
    row_bytes = nx * stored.itemsize
    chunk = n if width == nx else max(1, min(n, _CHUNK_BYTES // row_bytes))
    buf = out if width == nx else np.empty((chunk, nx), dtype=out.dtype)
    with open(path, "rb", buffering=0) as fh:
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            view = (out[a:b] if width == nx else buf[: b - a]).reshape(-1).view(np.uint8)
            start = layout.offset + (r0 + a) * row_bytes
            got = 0
            while got < view.nbytes:
                k = os.preadv(fh.fileno(), [view[got:]], start + got)
                if not k:
                    raise InputFileError(
                        f"{path}: file shrank while being read ({start + got} of "
                        f"{start + view.nbytes} bytes); re-copy it and re-run."
                    )
                got += k
            if width != nx:
                out[a:b] = buf[: b - a, c0:c1]
    if stored.byteorder not in ("=", "|") and stored.byteorder != out.dtype.byteorder:
        out.byteswap(inplace=True)  # the file is big-endian; the result is native
    return out


def read_region(
    path: Path,
    *,
    hdu: int,
    layout: PixelLayout | None,
    rows: slice,
    cols: slice | None = None,
) -> np.ndarray:
    """Rows (and columns) of a 2-D image as float64 physical values.

    With a ``layout`` (an uncompressed image) only the requested rows are read from disk
    (:func:`read_stored`); otherwise (a tile-compressed image) astropy's ``section``.
    """
    if layout is not None and rows.indices(layout.shape[0])[2] == 1:
        raw = read_stored(path, layout, rows, cols)
        return physical(raw, layout.scaling, dtype=np.float64)
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            data = hdul[hdu].section[rows, cols if cols is not None else slice(None)]
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise _not_fits(path, exc) from None
    return np.asarray(data, dtype=np.float64)
