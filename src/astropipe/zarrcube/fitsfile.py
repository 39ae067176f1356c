"""Open one FITS file for fits_to_zarr: checksum, truncation check, headers, pixel planes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits

from astropipe.errors import InputFileError

__all__ = ["sha256_and_size", "open_fits", "scaled", "check_complete"]

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
