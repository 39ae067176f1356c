"""Writing FITS images band by band, with the bytes astropy's ``writeto`` would write.

A master frame or a calibrated frame of 16k × 16k pixels is 1 GB a plane: it must not be held
whole to be written. :class:`StreamedFits` lays the file out first (every header's size is
known from its cards, every data unit's from its shape), then takes rows of each image at any
time, in any order, and writes them with ``pwrite`` at their final offset, big-endian. Rows
can be read back (:class:`FitsPlane`), also from the file still being written, so a later
pass can use what an earlier one wrote. :meth:`StreamedFits.finish` computes ``DATASUM``
from the data units on disk (read in chunks of a few MB), then each ``CHECKSUM``, and writes
the headers.

Headers are made by astropy itself: each HDU is built with a one-pixel stand-in of the right
dtype, ``add_checksum`` places the ``CHECKSUM``/``DATASUM`` cards, and ``HDUList.writeto``
(into memory) applies its usual header updates; only ``NAXISn`` and the two checksum values
are then set. So a streamed file is byte-identical to ``HDUList(hdus)``, ``add_checksum(when=...)``
on each HDU, then ``writeto``, on the whole arrays (tested). The checksum is the FITS standard's
32-bit ones'-complement sum (FITS 4.0, appendix J), which does not depend on the order the
words are added in.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from astropipe.io.fits import PixelLayout, Scaling, read_stored

__all__ = ["ImageSpec", "StreamedFits", "FitsPlane", "ones_complement_sum", "encode_checksum"]

_BLOCK = 2880
#: Bytes read at once when summing a data unit.
_SUM_CHUNK = 8 * 2**20


def ones_complement_sum(data: bytes | memoryview | np.ndarray, start: int = 0) -> int:
    """The 32-bit ones'-complement sum of ``data``'s big-endian words, added to ``start``.

    ``data`` must begin at a word boundary of the data unit; a last partial word is padded with
    zeros, as the standard says. The result is folded to 32 bits (end-around carry).
    """
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    raw = raw.reshape(-1).view(np.uint8)
    s = int(start)
    extra = raw.size % 4
    if extra:
        s += int.from_bytes(bytes(raw[-extra:]) + b"\0" * (4 - extra), "big")
        raw = raw[: raw.size - extra]
    # one uint64 sum of at most 2**21 words cannot overflow
    for a in range(0, raw.size, _SUM_CHUNK):
        s += int(raw[a : a + _SUM_CHUNK].view(">u4").sum(dtype=np.uint64))
        while s >> 32:
            s = (s & 0xFFFFFFFF) + (s >> 32)
    while s >> 32:
        s = (s & 0xFFFFFFFF) + (s >> 32)
    return s


_EXCLUDE = frozenset((0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60))


def encode_checksum(value: int) -> str:
    """The 16-character ASCII encoding of a 32-bit checksum (FITS 4.0, appendix J)."""
    value &= 0xFFFFFFFF
    asc = [0] * 16
    for i in range(4):
        byte = (value >> ((3 - i) * 8)) & 0xFF
        quotient, remainder = byte // 4 + ord("0"), byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        again = True
        while again:  # keep clear of the punctuation between digits and letters
            again = False
            for j in (0, 2):
                if ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    again = True
        for j in range(4):
            asc[4 * j + i] = ch[j]
    # the standard rotates the string one character to the right
    return "".join(chr(asc[(i + 15) % 16]) for i in range(16))


def _padded(n: int) -> int:
    return -(-n // _BLOCK) * _BLOCK


@dataclass(frozen=True)
class ImageSpec:
    """One HDU to stream: its header cards (no structural keywords), and its image, if any."""

    header: fits.Header
    dtype: np.dtype | None = None  # None: a header-only primary HDU
    shape: tuple[int, int] | None = None
    name: str | None = None  # EXTNAME of an extension
    #: ``(keyword, value)`` set once the HDU is made, so they follow EXTNAME, as
    #: ``hdu.header[keyword] = value`` after ``ImageHDU(..., name=...)`` puts them
    after: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class FitsPlane:
    """Rows of one image of a FITS file, read with ``pread`` and written with ``pwrite``.

    The file may be one :class:`StreamedFits` is still writing. Reads and writes cost the rows
    asked for, never the whole image.
    """

    path: Path
    layout: PixelLayout

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return self.layout.shape  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        """The values' dtype, native byte order."""
        return np.dtype(self.layout.dtype).newbyteorder("=")

    def read(self, r0: int, r1: int, cols: slice | None = None) -> np.ndarray:
        """Rows ``[r0, r1)`` (and columns ``cols``) as a new native-order array."""
        return read_stored(self.path, self.layout, slice(r0, r1), cols)

    def write(self, r0: int, values: np.ndarray) -> None:
        """Write ``values`` (rows × columns, any float/int dtype castable) from row ``r0``."""
        rows, cols = self.shape
        if values.ndim != 2 or values.shape[1] != cols or r0 < 0 or r0 + values.shape[0] > rows:
            raise ValueError(f"rows {r0}+{values.shape} do not fit an image of {self.shape}")
        stored = np.ascontiguousarray(values, dtype=np.dtype(self.layout.dtype))
        view = stored.reshape(-1).view(np.uint8)
        start = self.layout.offset + r0 * cols * stored.itemsize
        fd = os.open(self.path, os.O_WRONLY)
        try:
            done = 0
            while done < view.nbytes:
                done += os.pwrite(fd, view[done:], start + done)
        finally:
            os.close(fd)


class StreamedFits:
    """A FITS file whose images are written band by band (see the module docstring).

    Parameters
    ----------
    path
        The file to create (truncated if it exists). Write it inside
        :func:`astropipe.io.atomic.atomic_path` so that it appears under its final name only
        once :meth:`finish` has run.
    specs
        The HDUs in order: the first is the primary.
    checksum_comment
        Comment of the ``CHECKSUM`` and ``DATASUM`` cards (astropy's ``add_checksum(when=)``);
        a fixed text keeps files identical from run to run.
    """

    def __init__(self, path: Path, specs: Sequence[ImageSpec], *, checksum_comment: str) -> None:
        self.path = Path(path)
        hdus: list[fits.PrimaryHDU | fits.ImageHDU] = []
        for i, spec in enumerate(specs):
            stand_in = None if spec.dtype is None else np.zeros((1, 1), dtype=spec.dtype)
            if i == 0:
                hdus.append(fits.PrimaryHDU(stand_in, header=spec.header.copy()))
            else:
                hdus.append(fits.ImageHDU(stand_in, header=spec.header.copy(), name=spec.name))
            for key, value in spec.after:
                hdus[-1].header[key] = value
        hdul = fits.HDUList(hdus)  # adds EXTEND to the primary when there are extensions
        for hdu in hdul:
            hdu.add_checksum(when=checksum_comment)
        # astropy sums the header as it is when add_checksum runs; writeto may then update it
        # without summing again. Both are kept: the first for CHECKSUM, the second is what
        # the file holds.
        self._summed = [hdu.header.copy() for hdu in hdus]
        hdul.writeto(io.BytesIO(), output_verify="exception")
        self._headers = [hdu.header for hdu in hdus]
        self._layouts: list[PixelLayout | None] = []
        offset = 0
        self._offsets: list[int] = []
        self._header_ends: list[int] = []
        for header, summed, spec in zip(self._headers, self._summed, specs, strict=True):
            if spec.shape is not None:
                for h in (header, summed):
                    h["NAXIS1"], h["NAXIS2"] = spec.shape[1], spec.shape[0]
            self._offsets.append(offset)
            offset += len(header.tostring())
            self._header_ends.append(offset)
            if spec.dtype is None or spec.shape is None:
                self._layouts.append(None)
                continue
            dtype = np.dtype(spec.dtype).newbyteorder(">")
            self._layouts.append(PixelLayout(offset, dtype.str, tuple(spec.shape), Scaling()))
            offset += _padded(dtype.itemsize * spec.shape[0] * spec.shape[1])
        self.size = offset
        with open(self.path, "wb") as fh:
            fh.truncate(offset)  # sparse until written; padding reads back as zeros

    def plane(self, index: int) -> FitsPlane:
        """The image of HDU ``index``, for writing and reading rows."""
        layout = self._layouts[index]
        if layout is None:
            raise ValueError(f"HDU {index} of {self.path} has no image")
        return FitsPlane(self.path, layout)

    def _datasum(self, index: int) -> int:
        layout = self._layouts[index]
        if layout is None:
            return 0
        nbytes = np.dtype(layout.dtype).itemsize * layout.count
        s = 0
        buf = np.empty(min(_SUM_CHUNK, nbytes), dtype=np.uint8)
        with open(self.path, "rb", buffering=0) as fh:
            for a in range(0, nbytes, _SUM_CHUNK):
                view = buf[: min(_SUM_CHUNK, nbytes - a)]
                got = 0
                while got < view.size:
                    k = os.preadv(fh.fileno(), [view[got:]], layout.offset + a + got)
                    if not k:
                        raise OSError(f"{self.path}: short read while summing HDU {index}")
                    got += k
                s = ones_complement_sum(view, s)
        return s

    def finish(self, updates: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        """Set header values known only now (``{hdu: {keyword: value}}``, cards that exist),
        compute ``DATASUM`` and ``CHECKSUM`` of every HDU and write the headers."""
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for i, (header, summed) in enumerate(zip(self._headers, self._summed, strict=True)):
                datasum = self._datasum(i)
                for h in (header, summed):
                    for key, value in (updates or {}).get(i, {}).items():
                        if key not in h:
                            raise KeyError(f"{key} is not a card of HDU {i}; add a placeholder")
                        h[key] = value
                    h["DATASUM"] = str(datasum)
                summed["CHECKSUM"] = "0" * 16
                csum = ones_complement_sum(summed.tostring().encode("ascii"), datasum)
                header["CHECKSUM"] = encode_checksum(~csum)
                text = header.tostring().encode("ascii")
                if self._offsets[i] + len(text) != self._header_ends[i]:
                    # a value that needs more cards (a long string) cannot be set afterwards
                    raise RuntimeError(f"{self.path}: header {i} changed size while writing")
                done = 0
                while done < len(text):
                    done += os.pwrite(fd, text[done:], self._offsets[i] + done)
        finally:
            os.close(fd)
