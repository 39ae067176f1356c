"""Open one FITS file for fits_to_zarr: checksum, truncation check, headers, pixel planes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
from astropy.io import fits

from astropipe.errors import InputFileError

__all__ = [
    "sha256_and_size",
    "open_fits",
    "scaled",
    "check_complete",
    "read_primary",
    "read_primary_header",
    "physical",
    "Known",
    "known_layout",
    "read_known",
]

_BLOCK = 1 << 22


def sha256_and_size(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size in bytes of ``path``, read in 4 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def check_complete(hdul: fits.HDUList, path: Path) -> None:
    """Raise InputFileError when an HDU's data extends past the end of the file (truncated)."""
    size = os.path.getsize(path)
    for i in range(len(hdul)):
        info = hdul.fileinfo(i)
        if info is None:
            continue
        needed = int(info["datLoc"]) + int(hdul[i]._data_size)  # bytes of data, without padding
        if needed > size:
            raise InputFileError(
                f"{path}: FITS file is truncated (HDU {i} needs {needed} bytes, the file has "
                f"{size}); re-copy or re-download it."
            )


@contextmanager
def open_fits(path: Path, *, memmap: bool = True) -> Iterator[fits.HDUList]:
    """Open ``path`` (memory-mapped by default), every HDU parsed, truncation checked.

    Raises
    ------
    InputFileError
        When the file is not FITS, has a damaged header, or is truncated.
    """
    try:
        hdul = fits.open(path, memmap=memmap, lazy_load_hdus=False, mode="readonly")
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise InputFileError(
            f"{path}: not a readable FITS file ({type(exc).__name__}: {exc}); "
            "re-copy it or remove it from the collection."
        ) from exc
    try:
        check_complete(hdul, path)
        yield hdul
    finally:
        hdul.close()


def scaled(hdu: fits.ImageHDU | fits.PrimaryHDU, path: Path) -> np.ndarray:
    """The HDU's pixels with BSCALE/BZERO applied (astropy's arithmetic)."""
    try:
        data = hdu.data
    except (OSError, ValueError, TypeError) as exc:
        raise InputFileError(
            f"{path}: pixel data of HDU {hdu.name!r} cannot be read ({exc}); re-copy the file."
        ) from exc
    if data is None:
        raise InputFileError(f"{path}: HDU {hdu.name!r} has no pixel data; expected an image.")
    return data


_BITPIX = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _data_nbytes(header: fits.Header) -> int:
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    n = abs(int(header["BITPIX"])) // 8
    for k in range(1, naxis + 1):
        n *= int(header[f"NAXIS{k}"])
    return n


def read_primary_header(path: Path) -> fits.Header:
    """The primary header of ``path``, after checking that the file holds all its pixels.

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
    except (OSError, ValueError, EOFError) as exc:
        raise InputFileError(
            f"{path}: not a readable FITS file ({type(exc).__name__}: {exc}); "
            "re-copy it or remove it from the collection."
        ) from exc
    needed = offset + _data_nbytes(header)
    size = os.path.getsize(path)
    if needed > size:
        raise InputFileError(
            f"{path}: FITS file is truncated (the primary HDU needs {needed} bytes, the file has "
            f"{size}); re-copy or re-download it."
        )
    header["_OFFSET"] = offset  # private: where the pixels start; removed by read_primary
    return header


def read_primary(
    path: Path, buffer: bytearray | None = None
) -> tuple[fits.Header, np.ndarray, str]:
    """Header, physical pixels (BSCALE/BZERO applied, BLANK -> NaN) and SHA-256 of ``path``.

    The file is read once: the same bytes are hashed and decoded. Integer images come back
    as float32 computed in float64 (``raw * BSCALE + BZERO``), as FITS defines them. Pass a
    ``buffer`` to reuse between calls (it grows as needed; float pixels returned without
    scaling are a view into it, valid until the next call).
    """
    header = read_primary_header(path)
    offset = int(header.pop("_OFFSET"))
    size = os.path.getsize(path)
    if buffer is None:
        buffer = bytearray(size)
    view = _read_into(path, buffer, size)
    digest = hashlib.sha256(view).hexdigest()
    raw = view
    bitpix = int(header["BITPIX"])
    shape = tuple(int(header[f"NAXIS{k}"]) for k in range(int(header["NAXIS"]), 0, -1))
    count = int(np.prod(shape)) if shape else 0
    data = np.frombuffer(raw, dtype=_BITPIX[bitpix], count=count, offset=offset).reshape(shape)
    return header, physical(data, header), digest


def _read_into(path: Path, buffer: bytearray, size: int) -> memoryview:
    """The first ``size`` bytes of ``path``, read into ``buffer`` (grown as needed)."""
    if len(buffer) < size:
        buffer.extend(bytes(size - len(buffer)))
    view = memoryview(buffer)[:size]
    with open(path, "rb", buffering=0) as fh:
        got = 0
        while got < size:
            n = fh.readinto(view[got:])
            if not n:
                raise InputFileError(f"{path}: file shrank while being read; re-run.")
            got += n
    return view


def _head_digest(head: bytes | memoryview) -> bytes:
    return hashlib.blake2b(head, digest_size=16).digest()


class Known(NamedTuple):
    """What the header of a file said when it was scanned: enough to decode its pixels."""

    size: int  # file size in bytes
    offset: int  # where the pixels start (= bytes of header blocks)
    head: bytes  # BLAKE2b of the header blocks, to check they are unchanged
    dtype: str
    shape: tuple[int, ...]
    bscale: float
    bzero: float
    blank: int | None


def known_layout(path: Path, header: fits.Header) -> Known:
    """:class:`Known` for ``path`` from a header of :func:`read_primary_header` (with _OFFSET)."""
    offset = int(header["_OFFSET"])
    with open(path, "rb") as fh:
        head = fh.read(offset)
    naxis = int(header["NAXIS"])
    return Known(
        size=os.path.getsize(path),
        offset=offset,
        head=_head_digest(head),
        dtype=_BITPIX[int(header["BITPIX"])],
        shape=tuple(int(header[f"NAXIS{k}"]) for k in range(naxis, 0, -1)),
        bscale=float(header.get("BSCALE", 1.0)),
        bzero=float(header.get("BZERO", 0.0)),
        blank=int(header["BLANK"]) if int(header["BITPIX"]) > 0 and "BLANK" in header else None,
    )


def read_known(path: Path, buffer: bytearray, known: Known) -> tuple[np.ndarray, str] | None:
    """Physical pixels and SHA-256 of ``path`` whose header was scanned as ``known``.

    Same values as :func:`read_primary` without parsing the header again; None when the
    file's size or header blocks changed since (then use :func:`read_primary`).
    """
    if os.path.getsize(path) != known.size:
        return None
    view = _read_into(path, buffer, known.size)
    if _head_digest(view[: known.offset]) != known.head:
        return None
    digest = hashlib.sha256(view).hexdigest()
    count = int(np.prod(known.shape)) if known.shape else 0
    data = np.frombuffer(view, dtype=known.dtype, count=count, offset=known.offset)
    data = data.reshape(known.shape)
    return _physical(data, known.bscale, known.bzero, known.blank), digest


def physical(data: np.ndarray, header: fits.Header) -> np.ndarray:
    """Stored pixels -> physical values: ``raw * BSCALE + BZERO`` in float64, BLANK -> NaN.

    Integer or scaled images come back as float32; unscaled float images unchanged.
    """
    bscale, bzero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
    blank = int(header["BLANK"]) if data.dtype.kind in "iu" and "BLANK" in header else None
    return _physical(data, bscale, bzero, blank)


def _physical(data: np.ndarray, bscale: float, bzero: float, blank: int | None) -> np.ndarray:
    if data.dtype.kind in "iu":
        out = data.astype(np.float64) * bscale + bzero
        if blank is not None:
            out[data == blank] = np.nan
        return out.astype(np.float32)
    if bscale != 1.0 or bzero != 0.0:
        return (data.astype(np.float64) * bscale + bzero).astype(np.float32)
    return data
