"""The ``cubes`` contract: one summary row per Zarr store time step (and frequency), fits_to_zarr.

What the producer wrote is read through its declared contract only:
:func:`astropipe.zarrcube.manifest.read_manifest` (kind, time steps, input checksums, chunk
checksums) and :func:`astropipe.zarrcube.chunks.verify_chunks`. Every chunk is checked against
the SHA-256 fits_to_zarr recorded before anything is decoded; a damaged chunk is read as missing
(never handed to the codec) and the rows of its time steps get a ``problem`` naming it.

Each store is opened lazily with xarray (``consolidated=False``, times as raw MJD; by absolute
path, since a cluster's workers run in another working directory). The small per-step
variables (time, ``step_complete``, ``BMAJ``/``BMIN``, ``exposure``) are read whole; the image
(``SKY`` for lwa, ``SCI`` for ccd) is reduced to per-step counts in one dask graph, chunk by
chunk, under whatever dask scheduler is set (the stage sets ``compute``'s:
:func:`astropipe.compute.scheduler`), so only a chunk per worker is in memory; the counts are
integers, so the rows are the same on every scheduler. The finite fraction counts pixels
where ``ra`` is finite (inside the horizon of an all-sky image: l*l + m*m <= 1 for a store
with l/m and no ``ra``; every pixel when the store has neither).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from astropipe.errors import InputFileError
from astropipe.validation.config import CubeCollectionConfig, CubesConfig
from astropipe.validation.rules import Contract, Rule, unique
from astropipe.zarrcube.chunks import HidingStore, chunk_refs, describe, verify_chunks
from astropipe.zarrcube.manifest import COMPLETE, Manifest, read_manifest

__all__ = ["CUBE_COLUMNS", "cube_rows", "cubes_table", "cubes_contract"]

log = logging.getLogger(__name__)

#: Columns of the summary table, in order.
CUBE_COLUMNS: tuple[str, ...] = (
    "item",
    "collection",
    "kind",
    "time_index",
    "frequency",
    "time",
    "time_step",
    "step_complete",
    "finite_fraction",
    "min_finite_fraction",
    "bmaj",
    "bmin",
    "exposure",
    "inputs_recorded",
    "inputs_expected",
    "problem",
)
#: Columns held as float64 (NaN where a store kind has no such value).
_NUMERIC = CUBE_COLUMNS[4:-1]


def _manifest(path: Path, build: str) -> Manifest:
    try:
        manifest = read_manifest(path)
    except InputFileError as exc:
        raise InputFileError(
            f"{str(exc).removesuffix('.')}; or rebuild it with `{build}` (zarr.rebuild=true) or "
            "fetch it with dvc pull."
        ) from None
    if manifest is None:
        raise InputFileError(
            f"{path.as_posix()}: not a fits_to_zarr store (no manifest in its attributes); "
            f"build it with `{build}`."
        )
    return manifest


def _open(path: Path, build: str, hidden: set[str]) -> xr.Dataset:
    try:
        store = HidingStore(path.resolve(), hidden)  # absolute: the graph may run elsewhere
        return xr.open_zarr(store, consolidated=False, decode_times=False)
    except (OSError, ValueError, KeyError) as exc:
        raise InputFileError(
            f"{path.as_posix()}: not a readable Zarr store ({str(exc).splitlines()[0]}); "
            f"rebuild it with `{build}` (zarr.rebuild=true) or fetch it with dvc pull."
        ) from None


def _chunk_problems(path: Path, manifest: Manifest, build: str) -> tuple[dict[int, str], set[str]]:
    """Time index → what is wrong with its chunks (``-1``: every index), and the bad keys."""
    fix = f"run `{build}` to rewrite it from its inputs, or `dvc checkout {path.as_posix()}`"
    if not manifest.chunk_sha256:
        return {-1: f"{path.as_posix()}: no chunk checksums in its manifest; {fix}"}, set()
    bad = verify_chunks(path, manifest.chunk_sha256)
    if not bad:
        return {}, set()
    refs = {r.key: r for r in chunk_refs(zarr.open_group(path, mode="r", use_consolidated=False))}
    per_chunk = manifest.time_chunk
    out: dict[int, str] = {}
    for key, reason in bad.items():
        text = f"{describe(path, key, reason)}; {fix}"
        ref = refs.get(key)
        if ref is None or ref.time_chunk is None:  # a coordinate: every step reads it
            out.setdefault(-1, text)
            continue
        for t in range(ref.time_chunk * per_chunk, (ref.time_chunk + 1) * per_chunk):
            out.setdefault(t, text)
    for key, reason in bad.items():
        log.warning("cubes: %s", describe(path, key, reason))
    return out, set(bad)


def _per_time(ds: xr.Dataset, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in ds:
        return np.full(shape, np.nan)
    return np.asarray(ds[name].values, dtype="float64").reshape(shape)


def cube_rows(name: str, cfg: CubeCollectionConfig) -> list[dict[str, Any]]:
    """Summarise one store: a row per time step (lwa: per time step and frequency)."""
    path = Path(cfg.path)
    manifest = _manifest(path, cfg.build)
    problems, hidden = _chunk_problems(path, manifest, cfg.build)
    ds = _open(path, cfg.build, hidden)  # damaged chunks read as missing, never decoded
    kind = manifest.kind or name
    var = manifest.image_var
    if var not in ds or "time" not in ds.dims:
        raise InputFileError(
            f"{path}: not a fits_to_zarr store of kind {kind!r} (no {var}(time, ...)); rebuild it "
            f"with `{cfg.build}` (zarr.rebuild=true)."
        )
    image = ds[var]
    recorded = manifest.input_files
    root = Path(cfg.input_dir)
    expected = sum(1 for p in root.glob(cfg.glob) if p.is_file()) if root.is_dir() else 0
    times = np.asarray(ds["time"].values, dtype="float64")
    nt = times.size
    freqs = np.asarray(ds["frequency"].values, dtype="float64") if "frequency" in ds.dims else None
    nf = 1 if freqs is None else freqs.size
    complete = _per_time(ds, COMPLETE, (nt,))
    bmaj = _per_time(ds, "BMAJ", (nt, nf))
    bmin = _per_time(ds, "BMIN", (nt, nf))
    exposure = _per_time(ds, "exposure", (nt,))
    sky = [d for d in image.dims if d not in ("time", "frequency")]
    inside = np.isfinite(ds["ra"]) if "ra" in ds.coords else True  # aligned by dim names
    if "ra" not in ds.coords and "l" in ds.coords and "m" in ds.coords:
        # lwa stores keep no per-pixel RA/Dec (the phase centre moves): the SIN horizon
        inside = ds["l"] * ds["l"] + ds["m"] * ds["m"] <= 1.0
    ones = xr.ones_like(image.isel(time=0), dtype=bool) if nt else None
    total = (ones & inside).sum(dim=sky).values.reshape(nf) if nt else None
    # lazy: one graph over every step, reduced chunk by chunk on the current dask scheduler
    finite = (np.isfinite(image) & inside).sum(dim=sky)
    order = ("time", "frequency") if freqs is not None else ("time",)
    counts = finite.transpose(*order).values.reshape(nt, nf) if nt else None
    rows = []
    for t in range(nt):
        assert counts is not None and total is not None
        count = counts[t]
        for f in range(nf):
            label = f"{path.as_posix()}[time={t}" + (
                f",frequency={freqs[f]:g}]" if freqs is not None else "]"
            )
            rows.append(
                {
                    "item": label,
                    "collection": name,
                    "kind": kind,
                    "time_index": t,
                    "frequency": np.nan if freqs is None else freqs[f],
                    "time": times[t],
                    "time_step": times[t] - times[t - 1] if t else np.nan,
                    "step_complete": complete[t],
                    "finite_fraction": count[f] / total[f] if total[f] else np.nan,
                    "min_finite_fraction": cfg.min_finite_fraction,
                    "bmaj": bmaj[t, f],
                    "bmin": bmin[t, f],
                    "exposure": exposure[t],
                    "inputs_recorded": recorded,
                    "inputs_expected": expected,
                    "problem": problems.get(t, problems.get(-1)),
                }
            )
    log.info("cubes: %s, %d time steps x %d frequencies summarised", path, nt, nf)
    return rows


def cubes_table(cfg: CubesConfig) -> pd.DataFrame:
    """The summary rows of every configured store, in configuration order."""
    rows = [row for name, coll in cfg.collections.items() for row in cube_rows(name, coll)]
    df = pd.DataFrame(rows, columns=list(CUBE_COLUMNS))
    for col in _NUMERIC:
        df[col] = df[col].astype("float64")
    return df


def _gt(col: str, lo: float, text: str) -> Rule:
    kwargs = {"column": col, "min_value": lo, "strict_min": True}
    return Rule(gxe.ExpectColumnValuesToBeBetween, kwargs, text)


def cubes_contract(cfg: CubesConfig) -> Contract:
    """Contract of the cubes summary: complete, increasing, finite steps; beams; inputs."""
    del cfg  # thresholds are per store, carried in the table (min_finite_fraction)
    rules = [Rule(gxe.ExpectTableRowCountToBeBetween, {"min_value": 1}, "at least one time step")]
    rules += [
        Rule(gxe.ExpectColumnToExist, {"column": c}, f"column {c} exists") for c in CUBE_COLUMNS
    ]
    rules += [
        Rule(
            gxe.ExpectColumnValuesToBeNull,
            {"column": "problem"},
            "every chunk of the step matches the SHA-256 fits_to_zarr recorded for it",
        ),
        unique(["collection", "time_index", "frequency"]),
        unique(["collection", "time", "frequency"]),
        _gt("time_step", 0.0, "time (MJD) strictly increasing along each store (time_step > 0)"),
        Rule(
            gxe.ExpectColumnValuesToBeInSet,
            {"column": "step_complete", "value_set": [1.0]},
            "step_complete is 1 (every array of the step on disk)",
        ),
        Rule(gxe.ExpectColumnValuesToNotBeNull, {"column": "time"}, "time (MJD) present"),
        Rule(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB,
            {
                "column_A": "finite_fraction",
                "column_B": "min_finite_fraction",
                "or_equal": True,
                "ignore_row_if": "neither",
            },
            "finite fraction of the image (where ra is finite) >= the store's threshold",
        ),
        _gt("frequency", 0.0, "frequency > 0 Hz (nulls ignored: ccd)"),
        _gt("bmaj", 0.0, "BMAJ > 0 deg (nulls ignored)"),
        _gt("bmin", 0.0, "BMIN > 0 deg (nulls ignored)"),
        Rule(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB,
            {
                "column_A": "bmaj",
                "column_B": "bmin",
                "or_equal": True,
                "ignore_row_if": "either_value_is_missing",
            },
            "BMAJ >= BMIN",
        ),
        _gt("exposure", 0.0, "exposure > 0 s (nulls ignored: lwa)"),
        Rule(
            gxe.ExpectColumnPairValuesToBeEqual,
            {
                "column_A": "inputs_recorded",
                "column_B": "inputs_expected",
                "ignore_row_if": "neither",
            },
            "input checksums recorded in the store = input files matching the collection's glob",
        ),
    ]
    return Contract("cubes", dict.fromkeys(CUBE_COLUMNS, ()), tuple(rules), key="item")
