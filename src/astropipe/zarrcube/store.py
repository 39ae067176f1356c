"""Zarr store plumbing: compressors, the xarray template, creating and replacing a store.

The manifest in the root attributes is :mod:`astropipe.zarrcube.manifest`; chunk checksums are
:mod:`astropipe.zarrcube.chunks`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from astropipe.zarrcube.chunks import HidingStore, array_dims
from astropipe.zarrcube.config import ChunksConfig, CompressorConfig
from astropipe.zarrcube.grid import Grid, sky_coordinates
from astropipe.zarrcube.layouts import Layout
from astropipe.zarrcube.manifest import COMPLETE

__all__ = [
    "compressor",
    "quiet_zarr",
    "create_store",
    "write_static",
    "read_flags",
    "write_attrs",
    "time_arrays",
    "remove_partials",
    "drop_consolidated",
    "fresh_path",
    "install",
]

log = logging.getLogger(__name__)
TIME_ATTRS = {
    "units": "days since 1858-11-17 00:00:00",  # MJD: raw values are MJD, xarray decodes to UTC
    "calendar": "proleptic_gregorian",
    "standard_name": "time",
    "long_name": "observation start (DATE-OBS), UTC, as MJD",
}


def compressor(cfg: CompressorConfig, zarr_format: int) -> Any:
    """The zarr (v3) or numcodecs (v2) compressor object for ``cfg``; None for ``none``."""
    if cfg.name == "none":
        return None
    if zarr_format == 3:
        from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

        if cfg.name == "zstd":
            return ZstdCodec(level=cfg.level)
        if cfg.name == "gzip":
            return GzipCodec(level=cfg.level)
        return BloscCodec(cname=cfg.cname, clevel=cfg.level, shuffle=cfg.shuffle, typesize=4)
    import numcodecs

    if cfg.name == "zstd":
        return numcodecs.Zstd(level=cfg.level)
    if cfg.name == "gzip":
        return numcodecs.GZip(level=cfg.level)
    shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[cfg.shuffle]
    return numcodecs.Blosc(cname=cfg.cname, clevel=cfg.level, shuffle=shuffle)


#: zarr settings for the writes: no per-chunk "is it all fill value?" scan (a full pass over
#: every chunk, and an all-NaN tile is cheap to store), and a codec thread pool sized to the
#: machine rather than zarr's default of cores + 4, which only adds contention here
WRITE_CONFIG = {"array.write_empty_chunks": True, "threading.max_workers": os.cpu_count() or 2}


@contextmanager
def quiet_zarr() -> Iterator[None]:
    """Silence zarr's notices about fixed-length strings and consolidated metadata in v3.

    Both are deliberate here: Stokes and filter labels are short fixed-length strings, and
    consolidated metadata saves readers one request per array on object stores.

    ``warnings.catch_warnings`` swaps process-global filters, so tasks on threads may drop or
    leave each other's filters (a zarr notice printed, or silenced for the rest of the
    process): kept all the same, as it only silences notices — nothing written depends on
    them and nothing in the stage records warnings.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=zarr.errors.UnstableSpecificationWarning)
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def _chunk(size: int, want: int) -> int:
    return size if want == -1 else max(1, min(size, want))


def create_store(
    path: Path,
    layout: Layout,
    *,
    static: dict[str, Any],
    grid: Grid,
    n_times: int,
    chunks: ChunksConfig,
    zarr_format: int,
    comp: Any,
) -> None:
    """Write the store's metadata and the coordinates without a time axis.

    Time-dependent arrays are created empty (lazy dask placeholders are never computed); the
    writer fills them one time step at a time. RA/Dec per pixel are written tile by tile.
    """
    ny, nx = grid.shape
    sizes = {
        "frequency": len(static.get("frequency_hz", [])),
        "polarization": len(static.get("polarization", [])),
    }
    a, b = layout.sky_dims
    sizes[a], sizes[b] = (nx, ny) if layout.transposed else (ny, nx)
    want = {"frequency": chunks.frequency, "polarization": -1, a: chunks.sky, b: chunks.sky}
    enc: dict[str, dict[str, Any]] = {}
    data_vars: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    tchunk = chunks.time  # from config only: the layout must not depend on the first batch

    def encoding(shape_chunks: tuple[int, ...], fill: Any) -> dict[str, Any]:
        e: dict[str, Any] = {
            "chunks": shape_chunks,
            "compressors": comp if comp is None else [comp],
        }
        if fill is not None:
            e["_FillValue"] = fill
        return e

    for v in layout.variables(static):
        shape = (n_times, *(sizes[d] for d in v.dims))
        chunk = (tchunk, *(_chunk(sizes[d], want[d]) for d in v.dims))
        arr = xr.Variable(("time", *v.dims), da.zeros(shape, dtype=v.dtype, chunks=chunk), v.attrs)
        (coords if v.coord else data_vars)[v.name] = arr
        enc[v.name] = encoding(chunk, None if v.dtype.startswith("<U") else v.fill)
    data_vars[COMPLETE] = xr.Variable(
        ("time",),
        da.zeros((n_times,), dtype="uint8", chunks=(tchunk,)),
        {"long_name": "1 once every array of this time step is written (astropipe fits_to_zarr)"},
    )
    enc[COMPLETE] = encoding((tchunk,), None)
    coords["time"] = xr.Variable(("time",), np.full(n_times, np.nan), TIME_ATTRS)
    enc["time"] = encoding((tchunk,), np.nan)
    for name, (dim, values, attrs) in layout.static_coords(static, grid).items():
        coords[name] = xr.Variable((dim,), values, attrs)
        enc[name] = encoding((len(values),), None)
    if grid.wcs and layout.pixel_radec:
        sky_chunk = (_chunk(sizes[a], chunks.sky), _chunk(sizes[b], chunks.sky))
        for name, long in (("ra", "right ascension"), ("dec", "declination")):
            coords[name] = xr.Variable(
                (a, b),
                da.zeros((sizes[a], sizes[b]), dtype="float64", chunks=sky_chunk),
                {"units": "deg", "long_name": f"{long} of the pixel centre (astropy.wcs); NaN "
                 "where the projection is undefined (beyond the horizon)"},
            )  # fmt: skip
            enc[name] = encoding(sky_chunk, np.nan)
    ds = xr.Dataset(data_vars, coords=coords)
    with quiet_zarr():
        ds.to_zarr(
            path, mode="w", compute=False, encoding=enc, zarr_format=zarr_format, consolidated=False
        )
        if grid.wcs and layout.pixel_radec:
            _write_sky(path, grid, layout, chunks.sky)


def _write_sky(path: Path, grid: Grid, layout: Layout, tile: int) -> None:
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    ny, nx = grid.shape
    for y0 in range(0, ny, tile):
        for x0 in range(0, nx, tile):
            ys, xs = slice(y0, min(ny, y0 + tile)), slice(x0, min(nx, x0 + tile))
            ra, dec = sky_coordinates(grid, xs, ys)
            if layout.transposed:
                group["ra"][xs, ys] = ra.T
                group["dec"][xs, ys] = dec.T
            else:
                group["ra"][ys, xs] = ra
                group["dec"][ys, xs] = dec


def write_static(
    path: Path, layout: Layout, *, static: dict[str, Any], grid: Grid, tile: int, names: set[str]
) -> None:
    """Write the arrays without a time axis named in ``names`` again (l/m, frequency, ra/dec…).

    They are functions of the stored grid and axes alone, so a damaged chunk of theirs is
    rewritten without any input file, with the same bytes as when the store was created.
    """
    coords = layout.static_coords(static, grid)
    with quiet_zarr():
        group = zarr.open_group(path, mode="r+", use_consolidated=False)
        for name in sorted(names & set(coords)):
            group[name][...] = np.asarray(coords[name][1])
        if names & {"ra", "dec"} and grid.wcs and layout.pixel_radec:
            _write_sky(path, grid, layout, tile)


def read_flags(path: Path, *, hidden: set[str] | frozenset[str] = frozenset()) -> np.ndarray:
    """The ``step_complete`` flags of a store; chunks in ``hidden`` read as 0 (not complete)."""
    with quiet_zarr():
        group = zarr.open_group(HidingStore(path, hidden), mode="r", use_consolidated=False)
        return np.asarray(group[COMPLETE][:])


def write_attrs(path: Path, attrs: dict[str, Any]) -> None:
    """Replace the root attributes (one atomic write of the root metadata document)."""
    with quiet_zarr():
        group = zarr.open_group(path, mode="r+", use_consolidated=False)
        group.attrs.put(attrs)


def time_arrays(group: zarr.Group) -> list[zarr.Array]:
    """Every array of ``group`` whose first dimension is ``time``."""
    arrays = (group[name] for name in sorted(group.array_keys()))
    return [arr for arr in arrays if array_dims(arr)[:1] == ("time",)]


def drop_consolidated(path: Path) -> None:
    """Remove consolidated metadata, so nobody reads stale shapes while the store changes.

    :func:`zarr.consolidate_metadata` puts it back at the end of a successful run.
    """
    (path / ".zmetadata").unlink(missing_ok=True)  # format 2
    root = path / "zarr.json"  # format 3: a key of the root document
    if root.is_file():
        doc = json.loads(root.read_text(encoding="utf-8"))
        if doc.pop("consolidated_metadata", None) is not None:
            tmp = root.with_name("zarr.json.partial")
            tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
            tmp.replace(root)


def remove_partials(path: Path) -> int:
    """Delete ``*.partial`` temporaries a killed zarr write left behind; return how many."""
    if not path.exists():
        return 0
    leftovers = list(path.rglob("*.partial"))
    for p in leftovers:
        p.unlink(missing_ok=True)
    return len(leftovers)


def fresh_path(store: Path) -> Path:
    """An empty sibling of ``store`` to build a new store in (a leftover of a crash removed).

    Only the writer holding ``<store>.lock`` calls this, so the leftover is nobody else's.
    """
    tmp = store.with_name(f".{store.name}.creating")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def install(new: Path, store: Path) -> None:
    """Move the store built at ``new`` to ``store``.

    An existing ``store`` is replaced: the caller does this only for an empty directory or an
    explicit ``zarr.rebuild=true``. The old store is renamed aside first and removed last, so
    no moment leaves ``store`` half-deleted.
    """
    old = store.with_name(f".{store.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if store.exists():
        store.rename(old)
    new.rename(store)
    if old.exists():
        shutil.rmtree(old)
