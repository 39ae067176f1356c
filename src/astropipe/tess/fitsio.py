"""A lean FITS binary-table reader for light-curve files: HDUs scanned by the standard's rules.

astropy's ``fits.open`` builds a full column model for every table (≈ 10 ms a file); a
light-curve read needs five columns and a few dozen keywords. This module walks the HDUs
itself (FITS 4.0: 2880-byte blocks, 80-character cards, the header ends at ``END``, the data
size is :func:`astropipe.io.fits.data_nbytes`, section 4.4.1), parses each
header with :meth:`astropy.io.fits.Header.fromstring`, and reads the wanted columns of a
BINTABLE as strided numpy views (section 7.3: ``TFORMn`` codes and repeat counts, ``TSCALn`` /
``TZEROn`` applied as ``TZERO + TSCAL · stored``).

A structural problem (no SIMPLE card, a header without END, data running past the end of the
file) becomes one :class:`~astropipe.errors.InputFileError` naming the file; an HDU whose
header is cut short ends the scan, and the HDUs before it are still returned (as astropy does)
with the reason in :attr:`Scan.problem`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from astropipe.errors import InputFileError
from astropipe.io.fits import data_nbytes, header_int

__all__ = ["BLOCK", "Hdu", "Scan", "scan_hdus", "table_columns", "read_columns"]

#: FITS block size in bytes.
BLOCK = 2880
_CARD = 80
_END = b"END" + b" " * 77

# TFORM code → (numpy big-endian dtype, bytes per element) for the codes a light curve uses;
# the others are walked over by their width only (FITS 4.0, table 18).
_NUMERIC = {
    "L": ("?", 1),
    "B": (">u1", 1),
    "I": (">i2", 2),
    "J": (">i4", 4),
    "K": (">i8", 8),
    "E": (">f4", 4),
    "D": (">f8", 8),
}
_WIDTH = {"A": 1, "C": 8, "M": 16, "P": 8, "Q": 16, **{k: v[1] for k, v in _NUMERIC.items()}}
_TFORM = re.compile(r"^\s*(\d*)\s*([LXBIJKAEDCMPQ])")


@dataclass(frozen=True)
class Hdu:
    """One HDU: its header, and where its data unit starts and how long it is."""

    index: int
    header: fits.Header
    data_offset: int
    data_nbytes: int

    @property
    def name(self) -> str:
        """EXTNAME, or '' when there is none."""
        value = self.header.get("EXTNAME", "")
        return value.strip() if isinstance(value, str) else ""

    @property
    def is_bintable(self) -> bool:
        """True for a BINTABLE extension."""
        x = self.header.get("XTENSION", "")
        return isinstance(x, str) and x.strip() == "BINTABLE"


@dataclass(frozen=True)
class Scan:
    """The HDUs found, and what stopped the scan early (None when it reached the end)."""

    hdus: list[Hdu]
    problem: str | None = None


def _header_end(raw: bytes, start: int) -> int | None:
    """Offset just past the END card of the header starting at ``start`` (None if absent)."""
    pos = start
    while True:
        pos = raw.find(_END, pos)
        if pos < 0:
            return None
        if (pos - start) % _CARD == 0:
            return pos + _CARD
        pos += 1


def scan_hdus(raw: bytes, where: str) -> Scan:
    """Walk the HDUs of a FITS file held in memory.

    Raises
    ------
    InputFileError
        Not FITS (no SIMPLE card), a primary header without END, or a data unit that runs
        past the end of the file.
    """
    if not raw.startswith(b"SIMPLE  ="):
        raise InputFileError(
            f"{where}: not a FITS file (it does not start with a SIMPLE card, "
            f"{len(raw)} bytes); re-download it."
        )
    hdus: list[Hdu] = []
    pos = 0
    while pos < len(raw):
        end = _header_end(raw, pos)
        if end is None:
            problem = (
                f"truncated or damaged: the header of HDU {len(hdus)} stops after "
                f"{len(raw) - pos} bytes without an END card"
            )
            if not hdus:
                raise InputFileError(f"{where}: {problem}; re-download it.")
            return Scan(hdus, problem)
        header = fits.Header.fromstring(raw[pos:end].decode("ascii", errors="replace"))
        data_offset = pos + -(-(end - pos) // BLOCK) * BLOCK
        nbytes = data_nbytes(header, f"{where} (HDU {len(hdus)})")
        if data_offset > len(raw):
            raise InputFileError(
                f"{where}: truncated: the header of HDU {len(hdus)} is padded to byte "
                f"{data_offset}, but the file ends at byte {len(raw)}; re-download it."
            )
        if data_offset + nbytes > len(raw):
            extname = header.get("EXTNAME")
            label = f"the {extname} extension" if extname else f"HDU {len(hdus)}"
            raise InputFileError(
                f"{where}: truncated: {label} needs {nbytes} bytes of data from byte "
                f"{data_offset}, but the file ends at byte {len(raw)}; re-download it."
            )
        hdus.append(Hdu(len(hdus), header, data_offset, nbytes))
        pos = data_offset + -(-nbytes // BLOCK) * BLOCK
    return Scan(hdus)


def table_columns(hdu: Hdu, where: str) -> dict[str, tuple[int, int, str, int]]:
    """Column name (upper case) → (byte offset in the row, repeat, TFORM code, field number)."""
    h = hdu.header
    tfields = header_int(h, "TFIELDS", where)
    naxis1 = header_int(h, "NAXIS1", where)
    if not 0 <= tfields <= 999:
        raise InputFileError(f"{where}: TFIELDS={tfields} is out of range; re-download it.")
    cols: dict[str, tuple[int, int, str, int]] = {}
    offset = 0
    for i in range(1, tfields + 1):
        tform = h.get(f"TFORM{i}")
        m = _TFORM.match(tform) if isinstance(tform, str) else None
        if m is None:
            raise InputFileError(f"{where}: TFORM{i}={tform!r} is not a FITS column format.")
        repeat = int(m[1]) if m[1] else 1
        code = m[2]
        width = -(-repeat // 8) if code == "X" else repeat * _WIDTH[code]
        name = h.get(f"TTYPE{i}", "")
        name = name.strip().upper() if isinstance(name, str) else ""
        if name and name not in cols:
            cols[name] = (offset, repeat, code, i)
        offset += width
    if offset != naxis1:
        raise InputFileError(
            f"{where}: the TFORMs add up to {offset} bytes a row but NAXIS1={naxis1}; the "
            "header is damaged — re-download it."
        )
    return cols


def read_columns(raw: bytes, hdu: Hdu, names: Sequence[str], where: str) -> dict[str, np.ndarray]:
    """The named scalar numeric columns of a BINTABLE HDU, native-endian, scaled.

    Integer columns without scaling stay integers (int64); a column with ``TSCALn``/``TZEROn``
    becomes ``TZERO + TSCAL · stored`` (float64, or int64 when both are integers).
    """
    cols = table_columns(hdu, where)
    naxis1 = header_int(hdu.header, "NAXIS1", where)
    naxis2 = header_int(hdu.header, "NAXIS2", where)
    if naxis1 * naxis2 > hdu.data_nbytes:
        raise InputFileError(f"{where}: NAXIS1 · NAXIS2 exceeds the data unit; re-download it.")
    out = {}
    for name in names:
        offset, repeat, code, i = cols[name.upper()]
        if code not in _NUMERIC or repeat != 1:
            raise InputFileError(
                f"{where}: column {name} is TFORM{i}={hdu.header.get(f'TFORM{i}')!r}; expected "
                "one number per cadence."
            )
        dt = np.dtype({"names": ["v"], "formats": [_NUMERIC[code][0]], "offsets": [offset],
                       "itemsize": naxis1})  # fmt: skip
        stored = np.frombuffer(raw, dtype=dt, count=naxis2, offset=hdu.data_offset)["v"]
        values = stored.astype(stored.dtype.newbyteorder("="))
        scale = hdu.header.get(f"TSCAL{i}", 1)
        zero = hdu.header.get(f"TZERO{i}", 0)
        if scale != 1 or zero != 0:
            if not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in (scale, zero)
            ):
                raise InputFileError(f"{where}: TSCAL{i}/TZERO{i} are not numbers.")
            if values.dtype.kind in "iu" and isinstance(scale, int) and isinstance(zero, int):
                values = values.astype(np.int64) * scale + zero
            else:
                values = values.astype(np.float64) * float(scale) + float(zero)
        out[name] = values
    return out
