"""The spatial grid that every file of a collection must share: image shape and celestial WCS.

:func:`grid_of` reduces a (corrected) header to a JSON-friendly :class:`Grid`; :func:`check_grid`
compares two grids and raises :class:`~astropipe.errors.GridMismatchError` naming both files and
the keywords that differ. :func:`sky_coordinates` evaluates RA/Dec per pixel with astropy.wcs
(NaN where the projection is undefined, e.g. beyond the horizon of an all-sky SIN image).
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from astropipe.errors import GridMismatchError

__all__ = [
    "PHASE_KEYS",
    "Grid",
    "grid_of",
    "check_grid",
    "celestial_wcs",
    "sky_coordinates",
]

# WCS keywords that define the pixel -> sky mapping (time keys such as MJD-OBS are left out:
# they change between time steps without moving the grid).
_WCS_KEY = re.compile(
    r"^(WCSAXES|CTYPE[12]|CUNIT[12]|CRVAL[12]|CRPIX[12]|CDELT[12]|PC[12]_[12]|CD[12]_[12]"
    r"|PV[12]_\d+|LONPOLE|LATPOLE|RADESYS|EQUINOX)$"
)
_RTOL = 1e-9
#: WCS cards of the phase centre (reference point on the sky). Zenith-phased radio snapshots
#: change them every time step while the l/m pixel grid stays the same.
PHASE_KEYS: tuple[str, ...] = ("CRVAL1", "CRVAL2")


@dataclass(frozen=True)
class Grid:
    """Image shape ``(ny, nx)`` and the celestial WCS cards (empty when there is no WCS)."""

    shape: tuple[int, int]
    wcs: dict[str, Any] = field(default_factory=dict)

    def to_attrs(self) -> dict[str, Any]:
        """JSON form stored in the Zarr attributes."""
        return {"shape": list(self.shape), "wcs": dict(sorted(self.wcs.items()))}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Grid:
        """Inverse of :meth:`to_attrs`."""
        return cls(shape=(int(attrs["shape"][0]), int(attrs["shape"][1])), wcs=dict(attrs["wcs"]))

    def split(self, keys: tuple[str, ...] = PHASE_KEYS) -> tuple[Grid, dict[str, Any]]:
        """The grid without the cards ``keys`` (the pixel grid), and those cards.

        For a zenith-phased series the pixel grid is shared by every time step and the
        phase centre (``CRVAL1``, ``CRVAL2``) is a property of each step.
        """
        rest = {k: v for k, v in self.wcs.items() if k not in keys}
        return Grid(shape=self.shape, wcs=rest), {k: self.wcs[k] for k in keys if k in self.wcs}

    def with_cards(self, cards: dict[str, Any]) -> Grid:
        """The grid with ``cards`` added or replaced (e.g. one time step's phase centre)."""
        return Grid(shape=self.shape, wcs=dict(sorted({**self.wcs, **cards}.items())))


def celestial_wcs(header: fits.Header) -> WCS | None:
    """The two celestial axes of ``header`` as an astropy WCS, or None when there are none."""
    # catch_warnings swaps process-global filters (not thread-safe) and this runs in scan
    # tasks; kept: it silences a notice only (the WCS does not depend on it), nothing in the
    # stage records warnings, and it runs once per grid per process (_is_celestial is cached)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(header)
    if not w.has_celestial:
        return None
    return w.celestial


def grid_of(header: fits.Header, shape: tuple[int, int]) -> Grid:
    """Reduce a corrected header and the image shape ``(ny, nx)`` to a :class:`Grid`."""
    # only the celestial-axis cards: time keys would make astropy "fix" (and warn) per file
    cards: dict[str, Any] = {}
    for card in header.cards:
        if _WCS_KEY.match(card.keyword):
            value = card.value
            cards[card.keyword] = value.strip() if isinstance(value, str) else value
    if not _is_celestial(tuple(sorted(cards.items()))):
        return Grid(shape=(int(shape[0]), int(shape[1])))
    return Grid(shape=(int(shape[0]), int(shape[1])), wcs=dict(sorted(cards.items())))


@functools.lru_cache(maxsize=64)
def _is_celestial(cards: tuple[tuple[str, Any], ...]) -> bool:
    # a series shares one grid, so astropy.wcs is consulted once, not once per file
    spatial = fits.Header(list(cards))
    spatial["NAXIS"] = 2
    return celestial_wcs(spatial) is not None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=_RTOL, abs_tol=1e-12)
    return a == b


def check_grid(ref: Grid, ref_name: str, other: Grid, other_name: str) -> None:
    """Raise GridMismatchError when ``other`` is not the grid ``ref``.

    Raises
    ------
    GridMismatchError
        Naming both files and each differing item (shape, or WCS keyword with both values).
    """
    diffs: list[str] = []
    if tuple(ref.shape) != tuple(other.shape):
        diffs.append(f"shape (ny, nx) {tuple(ref.shape)} vs {tuple(other.shape)}")
    for key in sorted(set(ref.wcs) | set(other.wcs)):
        a, b = ref.wcs.get(key), other.wcs.get(key)
        if not _same(a, b):
            diffs.append(f"{key} {a!r} vs {b!r}")
    if diffs:
        raise GridMismatchError(
            f"{other_name} does not share the pixel grid of {ref_name}: {'; '.join(diffs)}; "
            "every file of a collection must have the same shape and WCS — regrid the file, "
            "move it to its own collection, or set zarr.rebuild=true if the grid changed on "
            "purpose."
        )


def sky_coordinates(grid: Grid, xs: slice, ys: slice) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec (deg, float64) of pixels ``[ys, xs]`` (0-based), shape ``(ny, nx)``.

    RA is wrapped into [0, 360). Pixels where the projection is undefined (beyond the horizon
    of an all-sky SIN image) are NaN, as astropy.wcs returns them.
    """
    header = fits.Header()
    for key, value in grid.wcs.items():
        header[key] = value
    header["NAXIS"] = 2
    header["NAXIS1"], header["NAXIS2"] = grid.shape[1], grid.shape[0]
    w = celestial_wcs(header)
    if w is None:
        raise ValueError("sky_coordinates: the grid has no celestial WCS")
    y, x = np.mgrid[ys, xs]
    with np.errstate(invalid="ignore"):
        ra, dec = w.all_pix2world(x.astype(np.float64), y.astype(np.float64), 0)
        ra = np.mod(ra, 360.0)
    return ra, dec
