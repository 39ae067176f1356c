"""FITS image sections (``BIASSEC``, ``TRIMSEC``, ``DATASEC``) and overscan estimation.

FITS sections are written ``[x1:x2,y1:y2]``: 1-based, inclusive, x (column) first. numpy arrays
are indexed ``[row, column]`` from 0 with exclusive stops, so ``[4:13,1:520]`` becomes
``array[0:520, 3:13]``. A reversed range (``[13:4,...]``) selects the same pixels; astropipe
keeps them in storage order (only the extent matters for overscan and trimming).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from astropipe.errors import InputFileError

__all__ = ["Section", "parse_section", "overscan_vector", "OVERSCAN_METHODS"]

OVERSCAN_METHODS = ("median", "mean")

_RANGE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class Section:
    """A rectangular region as numpy slices: rows ``[y0, y1)`` and columns ``[x0, x1)``."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(row_slice, column_slice)`` for indexing a 2-D array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return self.y1 - self.y0, self.x1 - self.x0

    def fits(self) -> str:
        """The section in FITS notation (1-based, inclusive, x first)."""
        return f"[{self.x0 + 1}:{self.x1},{self.y0 + 1}:{self.y1}]"


def _axis(text: str, length: int, *, where: str) -> tuple[int, int]:
    text = text.strip()
    if text == "*":
        return 0, length
    m = _RANGE.match(text)
    if not m:
        raise InputFileError(f"{where}: cannot parse range {text!r}; expected e.g. 1:512 or *.")
    a, b = sorted((int(m.group(1)), int(m.group(2))))
    if a < 1 or b > length:
        raise InputFileError(
            f"{where}: range {text} lies outside the image axis of length {length} "
            "(FITS sections are 1-based and inclusive); fix the header keyword."
        )
    return a - 1, b


def parse_section(text: str, shape: tuple[int, int], *, where: str = "section") -> Section:
    """Parse a FITS section string for an image of numpy ``shape`` ``(rows, columns)``.

    Parameters
    ----------
    text
        e.g. ``"[17:528,1:520]"``; ``*`` selects a whole axis.
    shape
        The numpy shape of the image the section refers to.
    where
        Prefix for error messages (file and keyword).

    Returns
    -------
    Section

    Raises
    ------
    InputFileError
        When the text is malformed or lies outside the image.

    Examples
    --------
    >>> parse_section("[4:13,1:520]", (520, 536)).slices
    (slice(0, 520, None), slice(3, 13, None))
    """
    s = str(text).strip()
    if not (s.startswith("[") and s.endswith("]")) or s.count(",") != 1:
        raise InputFileError(f"{where}: {text!r} is not a FITS section like [x1:x2,y1:y2].")
    xs, ys = s[1:-1].split(",")
    x0, x1 = _axis(xs, shape[1], where=where)
    y0, y1 = _axis(ys, shape[0], where=where)
    return Section(y0, y1, x0, x1)


def overscan_axis(section: Section) -> int:
    """The axis to collapse, as ccdproc's ``subtract_overscan(overscan_axis=None)`` picks it.

    A strip taller than wide (columns of overscan at the side) collapses along axis 1 and gives
    one value per row; a strip wider than tall gives one value per column.
    """
    rows, cols = section.shape
    return 0 if cols > rows else 1


def overscan_vector(
    strip: np.ndarray, *, axis: int, method: str = "median", shape: tuple[int, int]
) -> np.ndarray:
    """Collapse an overscan strip into an array broadcastable against an image of ``shape``.

    Parameters
    ----------
    strip
        The overscan pixels (2-D).
    axis
        1: one value per row (the strip spans all rows); 0: one value per column.
    method
        ``median`` or ``mean`` of each line (ccdproc's ``median=True/False``).
    shape
        Shape of the image the result is subtracted from.

    Returns
    -------
    numpy.ndarray
        ``(rows, 1)`` for ``axis=1``, ``(1, columns)`` for ``axis=0``, float64.
    """
    data = np.asarray(strip, dtype=np.float64)
    values = np.median(data, axis=axis) if method == "median" else np.mean(data, axis=axis)
    if axis == 1:
        if values.size != shape[0]:
            raise InputFileError(
                f"overscan strip has {values.size} rows but the image has {shape[0]}; "
                "BIASSEC must span every row when the overscan is at the side."
            )
        return values.reshape(-1, 1)
    if values.size != shape[1]:
        raise InputFileError(
            f"overscan strip has {values.size} columns but the image has {shape[1]}; "
            "BIASSEC must span every column when the overscan is at the top or bottom."
        )
    return values.reshape(1, -1)
