"""What a collection's time step holds: ``lwa`` (radio subband images) and ``ccd`` (frames).

A layout turns the files of one time step into a :class:`StepInfo` (headers only: time,
per-step coordinates, beam, corrections, grid) in a cheap first pass, then into pixel arrays
and checksums in :meth:`Layout.read` when the writer gets to that step. It also describes the store
(:meth:`Layout.variables`) so the writer stays generic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from astropipe.zarrcube.discover import StepSpec
from astropipe.zarrcube.grid import Grid

__all__ = [
    "STORE_VERSIONS",
    "StepInfo",
    "Tiled",
    "VarSpec",
    "Layout",
    "names",
    "layout_for",
]

#: Version of each kind's store layout, recorded in the manifest (``layout.version``; stores
#: written before it was recorded are version 1). A store of another version is refused with
#: the way out (``zarr.rebuild=true``). lwa 2: per-time phase centre, no per-pixel RA/Dec.
STORE_VERSIONS: dict[str, int] = {"lwa": 2, "ccd": 1}


@dataclass
class StepInfo:
    """Everything known about one time step before its pixels are read."""

    key: str
    paths: tuple[Path, ...]
    files: dict[str, str | None]  # relative path -> sha256 (None until the step is read)
    nbytes: int
    time_mjd: float
    grid: Grid
    grid_file: str
    static: dict[str, Any]  # must be equal for every step of a store (frequency, Stokes)
    small: dict[str, np.ndarray] = field(default_factory=dict)  # per-step values, no time axis
    corrections: tuple[str, ...] = ()
    wcs: dict[str, Any] = field(default_factory=dict)  # the step's own WCS cards (phase centre)
    # what the scan learnt that spares the read a header parse (lwa: per path, its pixel
    # layout and plane order; checked against the bytes read); travels with the step's task
    hints: dict[Path, Any] = field(default_factory=dict)


class Tiled:
    """An image of one time step held as its sky chunks, each C-contiguous.

    The reader writes each tile in place (the byte-swapping transpose goes straight into the
    chunk's own buffer) and the writer hands every tile to zarr as exactly one chunk, which
    zarr encodes without copying it again. ``np.asarray(tiled)`` assembles the full array.

    Parameters
    ----------
    shape
        Shape of the full array (leading dims, then the two sky dims).
    tile
        Tile length along each sky dim (the store's ``chunks.sky``).
    dtype
        Pixel type.
    """

    def __init__(self, shape: tuple[int, ...], tile: int, dtype: str = "float32") -> None:
        self.shape = tuple(shape)
        *lead, na, nb = self.shape
        # (slice along the first sky dim, slice along the second, the tile's buffer)
        self.tiles: list[tuple[slice, slice, np.ndarray]] = [
            (
                slice(a, min(a + tile, na)),
                slice(b, min(b + tile, nb)),
                np.empty((*lead, min(a + tile, na) - a, min(b + tile, nb) - b), dtype=dtype),
            )
            for a in range(0, na, tile)
            for b in range(0, nb, tile)
        ]
        self.tile = tile
        self.dtype = np.dtype(dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        for sa, sb, block in self.tiles:
            out[..., sa, sb] = block
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self)[key]


@dataclass(frozen=True)
class VarSpec:
    """One time-dependent array of the store: name, dims after ``time``, dtype, fill, attrs."""

    name: str
    dims: tuple[str, ...]
    dtype: str
    fill: Any
    attrs: dict[str, Any]
    tiled: bool  # True: the last two dims are sky dims, chunked in tiles
    coord: bool = False  # True: a coordinate along time (filter, exposure), not a data variable


class Layout:
    """Base class; see :class:`LwaLayout` and :class:`CcdLayout`."""

    kind: ClassVar[str]
    #: names of the two sky dims, in the order they are stored
    sky_dims: ClassVar[tuple[str, str]]
    #: True when the stored sky dims are (x, y) — FITS axis 1 first — rather than (y, x)
    transposed: ClassVar[bool] = False
    #: True when RA/Dec per pixel hold for the whole store (one WCS for every time step)
    pixel_radec: ClassVar[bool] = True

    def group(self, files: list[Path]) -> list[StepSpec]:
        """Group the collection's files into time steps, sorted by key."""
        raise NotImplementedError

    def scan(self, spec: StepSpec) -> StepInfo:
        """Checksum the step's files and read their headers (no pixels)."""
        raise NotImplementedError

    def read(self, info: StepInfo) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """The step's time-dependent arrays (without the time axis) by variable name, and
        the SHA-256 of its files by ``path.as_posix()`` (each file is read once: hashed and
        decoded from one buffer). Runs in a task, possibly on another machine: nothing here
        may depend on the working directory.
        """
        raise NotImplementedError

    #: threads reading the files of one time step (lwa: ``zarr.read_workers``)
    read_workers: int = 1

    #: sky tile length of the store being written (``chunks.sky``); set by the writer so
    #: that a layout may deliver its images as :class:`Tiled` chunks
    tile: int | None = None

    def release(self, arrays: dict[str, Any]) -> None:
        """Hand the arrays of a written step back for reuse (optional)."""

    def close(self) -> None:
        """Release threads or buffers the layout holds (optional)."""

    def variables(self, static: dict[str, Any]) -> list[VarSpec]:
        """The store's time-dependent variables for a given ``static`` description."""
        raise NotImplementedError

    def static_coords(self, static: dict[str, Any], grid: Grid) -> dict[str, tuple[str, Any, dict]]:
        """Coordinates without a time axis: name -> (dim, values, attrs)."""
        raise NotImplementedError


def names(paths: tuple[Path, ...]) -> tuple[dict[str, str | None], int]:
    """Path -> None (checksum not known yet) for each file, and their total size.

    Paths as given (POSIX): a scan may run on a cluster worker in another working directory,
    so the writer makes them relative to its own (:func:`astropipe.provenance.relpath`).
    """
    files = {Path(p).as_posix(): None for p in paths}
    return dict(sorted(files.items())), sum(os.path.getsize(p) for p in paths)


def layout_for(kind: str, *, read_workers: int = 2) -> Layout:
    """The layout of a collection kind (``lwa`` or ``ccd``)."""
    from astropipe.zarrcube.ccd import CcdLayout
    from astropipe.zarrcube.lwa import LwaLayout

    if kind == "lwa":
        return LwaLayout(read_workers=read_workers)
    return CcdLayout()
