"""Image planes read and written by rows: in memory, or in a FITS file on disk.

Masters and calibrated frames are built band by band. Where each band goes is a *plane*: an
:class:`ArrayPlane` (a whole array in memory: small frames, tests) or an
:class:`astropipe.io.fitsstream.FitsPlane` (the image of a FITS file being written, read back
with ``pread``: any frame size at the memory of one band). Both have the same three members,
so the calibration code does not know which it writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

__all__ = ["Plane", "ArrayPlane", "band_starts", "read_bands"]


class Plane(Protocol):
    """Rows of one 2-D image."""

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        ...

    def read(self, r0: int, r1: int, cols: slice | None = None) -> np.ndarray:
        """Rows ``[r0, r1)`` (columns ``cols``), a new array in the plane's dtype."""
        ...

    def write(self, r0: int, values: np.ndarray) -> None:
        """Store ``values`` (whole rows) from row ``r0``."""
        ...


class ArrayPlane:
    """A plane held in memory as one array."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    @classmethod
    def empty(cls, shape: tuple[int, int], dtype: type | np.dtype) -> ArrayPlane:
        """An uninitialised plane (zeros for integer dtypes, so a MASK starts clear)."""
        kind = np.dtype(dtype).kind
        return cls(np.zeros(shape, dtype) if kind in "iub" else np.empty(shape, dtype))

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return self.array.shape  # type: ignore[return-value]

    def read(self, r0: int, r1: int, cols: slice | None = None) -> np.ndarray:
        """A copy of rows ``[r0, r1)`` (columns ``cols``)."""
        return self.array[r0:r1, cols if cols is not None else slice(None)].copy()

    def write(self, r0: int, values: np.ndarray) -> None:
        """Copy ``values`` into rows ``r0 …``, cast to the plane's dtype."""
        self.array[r0 : r0 + values.shape[0]] = values


def band_starts(rows: int, step: int) -> Iterator[tuple[int, int]]:
    """``(r0, r1)`` of consecutive bands of ``step`` rows covering ``rows``."""
    step = max(int(step), 1)
    for r0 in range(0, rows, step):
        yield r0, min(r0 + step, rows)


def read_bands(plane: Plane, step: int) -> Iterator[np.ndarray]:
    """The plane's rows, ``step`` at a time, in order."""
    for r0, r1 in band_starts(plane.shape[0], step):
        yield plane.read(r0, r1)
