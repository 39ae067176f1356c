"""Build or extend a collection's Zarr store one time step at a time.

Protocol (crash-safe, append without rewriting):

1. Take ``<store>.lock``; drop ``*.partial`` files a killed zarr write left.
2. Scan every input's headers (no pixels) and check grids, frequencies, Stokes, truncation.
3. Merge with the manifest already in the store: the target is every recorded time step plus
   every input time step, sorted by key. A step is skipped when it keeps its index, its
   ``step_complete`` flag is 1, and its files still have the recorded SHA-256 (hashed now).
4. Resize the time axis, clear ``step_complete`` of the steps to (re)write, save the manifest
   (those steps without checksums), then for each step: read its files once (hash + decode),
   write its arrays at its index, set ``step_complete``, record its checksums in the manifest.
5. Save the manifest, consolidate the metadata.

A crash anywhere leaves ``step_complete = 0`` or no checksum on any step not entirely
written, so a rerun redoes it; steps finished before the crash are not touched. Since the
store is a function of the sorted set of time steps only, the order and batching of inputs
do not change a byte. Peak memory is three time steps (two being written, one read ahead).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm.auto import tqdm

from astropipe import __version__
from astropipe.errors import GridMismatchError, MissingInputError
from astropipe.provenance import provenance
from astropipe.zarrcube import store as S
from astropipe.zarrcube.config import ChunksConfig, CompressorConfig
from astropipe.zarrcube.grid import Grid, check_grid
from astropipe.zarrcube.layouts import Layout, StepInfo, checksums
from astropipe.zarrcube.lock import StoreLock

__all__ = ["WriteOptions", "write_collection"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteOptions:
    """How to write a store (the layout-related part is recorded in the store)."""

    chunks: ChunksConfig = ChunksConfig()
    zarr_format: int = 3
    compressor: CompressorConfig = CompressorConfig()
    rebuild: bool = False
    read_workers: int = 2

    def record(self, kind: str) -> dict[str, Any]:
        """The options that define the bytes of the store, as stored in its manifest."""
        return {
            "kind": kind,
            "zarr_format": self.zarr_format,
            "chunks": {
                "time": self.chunks.time,
                "frequency": self.chunks.frequency,
                "sky": self.chunks.sky,
            },
            "compressor": {
                "name": self.compressor.name,
                "level": self.compressor.level,
                **(
                    {"cname": self.compressor.cname, "shuffle": self.compressor.shuffle}
                    if self.compressor.name == "blosc"
                    else {}
                ),
            },
        }


def _entry(info: StepInfo) -> dict[str, Any]:
    return {
        "key": info.key,
        "time_mjd": info.time_mjd,
        "files": info.files,
        "corrections": list(info.corrections),
    }


def _scan(layout: Layout, files: list[Path], workers: int, progress: bool) -> list[StepInfo]:
    specs = layout.group(files)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(layout.scan, specs)
        return list(tqdm(it, total=len(specs), desc="headers", unit="step", disable=not progress))


def _same_axis(key: str, a: Any, b: Any) -> bool:
    if key == "frequency_hz" and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return bool(np.allclose(a, b, rtol=1e-9, atol=0.0))
    return a == b


def _check_static(ref: dict[str, Any], ref_file: str, info: StepInfo) -> None:
    for key in sorted(set(ref) | set(info.static)):
        a, b = ref.get(key), info.static.get(key)
        if not _same_axis(key, a, b):
            raise GridMismatchError(
                f"{info.grid_file} (time step {info.key}) does not match {ref_file}: {key} "
                f"{b!r} vs {a!r}; every time step of a store needs the same axes — add the "
                "missing planes, or set zarr.rebuild=true if the axes changed on purpose."
            )


def _plan(
    infos: list[StepInfo], old: tuple[dict[str, Any], np.ndarray] | None, workers: int
) -> tuple[list[dict[str, Any]], list[tuple[int, StepInfo]]]:
    """The full manifest (one entry per target time step) and the steps to write.

    A stored step is kept when it keeps its index, is flagged complete, and its files still
    have the recorded checksums (hashed here, in parallel); any other input step is written.
    """
    flags = old[1] if old else np.zeros(0, dtype=np.uint8)
    new = {i.key: i for i in infos}
    old_entries: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, e in enumerate(old[0]["timesteps"] if old else []):
        finished = i < len(flags) and flags[i] == 1 and all(e["files"].values())
        if finished or e["key"] in new:
            old_entries[e["key"]] = (i, e)
        else:  # an interrupted step whose files have gone: it holds nothing worth keeping
            log.warning(
                "dropping unfinished time step %s: its files are no longer inputs", e["key"]
            )
    keys = sorted(set(old_entries) | set(new))
    entries: list[dict[str, Any]] = []
    todo: list[tuple[int, StepInfo]] = []
    maybe: list[tuple[int, StepInfo, dict[str, Any]]] = []
    for idx, key in enumerate(keys):
        prev = old_entries.get(key)
        done = prev is not None and prev[0] == idx and idx < len(flags) and flags[idx] == 1
        if key in new:
            info = new[key]
            entries.append(_entry(info))
            if done and set(prev[1]["files"]) == set(info.files) and all(prev[1]["files"].values()):
                maybe.append((idx, info, prev[1]))
            else:
                todo.append((idx, info))
            continue
        assert prev is not None
        if not done:
            why = "moves to another index" if prev[0] != idx else "is incomplete"
            raise MissingInputError(
                f"stored time step {key} {why} but its files {sorted(prev[1]['files'])} are not "
                "among the inputs; put them back in the input directory, or set zarr.rebuild=true."
            )
        entries.append(prev[1])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        sums = list(pool.map(lambda m: checksums(m[1].paths), maybe))
    for (idx, info, prev), got in zip(maybe, sums, strict=True):
        if got == prev["files"]:
            entries[idx] = prev
        else:
            todo.append((idx, info))
    return entries, sorted(todo, key=lambda t: t[0])


def _attrs(
    collection: str, opts: WriteOptions, kind: str, static: dict, grid: Grid, ref: str,
    entries: list[dict[str, Any]], config: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    inputs = {f: h for e in entries for f, h in e["files"].items()}
    ref = sorted(entries[0]["files"])[0]  # the first file of the series, whatever the batching
    corrections = sorted({c for e in entries for c in e["corrections"]})
    manifest = {
        "collection": collection,
        "layout": opts.record(kind),
        "static": {**static, "grid": grid.to_attrs(), "grid_file": ref},
        "header_corrections": corrections,
        "timesteps": entries,
        "provenance": provenance(stage="fits_to_zarr", inputs=inputs, params=config),
    }
    return {
        "Conventions": "CF-1.10",
        "title": f"astropipe fits_to_zarr collection {collection!r}",
        "source": f"astropipe {__version__} fits_to_zarr",
        "wcs": grid.to_attrs()["wcs"],
        S.ATTR: manifest,
    }


#: time steps compressed and written at once (when each step has its own time chunks)
STEP_WRITERS = 2
#: manifests smaller than this (bytes of JSON) are saved after every written step
MANIFEST_SMALL = 1 << 18


def _write_step(
    group: dict[str, zarr.Array], layout: Layout, idx: int, info: StepInfo, arrays: dict
) -> None:
    for v in layout.variables(info.static):
        group[v.name][idx : idx + 1] = np.asarray(arrays[v.name])[None]
    group["time"][idx : idx + 1] = np.array([info.time_mjd])
    # last: the flag says every array above is on disk
    group[S.COMPLETE][idx : idx + 1] = np.array([1], dtype=np.uint8)


def write_collection(
    layout: Layout,
    files: Iterable[Path],
    store: Path,
    *,
    collection: str,
    options: WriteOptions,
    config: dict[str, Any],
    progress: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Create or extend ``store`` from ``files``; return a summary (counts, no timings).

    Parameters
    ----------
    layout
        :class:`~astropipe.zarrcube.lwa.LwaLayout` or :class:`~astropipe.zarrcube.ccd.CcdLayout`.
    files
        The collection's FITS files, in any order.
    store
        The Zarr store directory.
    collection, config
        Collection name and the configuration recorded in the store's provenance.
    options
        Chunks, format, compressor, rebuild, read workers.
    progress
        Show tqdm progress bars.
    dry_run
        Scan and plan only; write nothing.

    Raises
    ------
    LockedError, GridMismatchError, InputFileError, MissingInputError
    """
    files = sorted(files)
    try:
        with StoreLock(store):
            return _write_locked(
                layout, files, store, collection, options, config, progress, dry_run
            )
    finally:
        layout.close()


def _write_locked(
    layout: Layout,
    files: list[Path],
    store: Path,
    collection: str,
    options: WriteOptions,
    config: dict[str, Any],
    progress: bool,
    dry_run: bool,
) -> dict[str, Any]:
    infos = _scan(layout, files, options.read_workers, progress)
    old = None if options.rebuild else S.read_manifest(store)
    if old and old[0].get("layout") != options.record(layout.kind):
        log.warning(
            "%s: built with %s, now %s; rebuilding",
            store,
            old[0].get("layout"),
            options.record(layout.kind),
        )
        old = None
    if old:
        static = {k: v for k, v in old[0]["static"].items() if k not in ("grid", "grid_file")}
        grid, ref = Grid.from_attrs(old[0]["static"]["grid"]), old[0]["static"]["grid_file"]
    else:
        static, grid, ref = infos[0].static, infos[0].grid, infos[0].grid_file
    for info in infos:
        check_grid(grid, ref, info.grid, info.grid_file)
        _check_static(static, ref, info)
    entries, todo = _plan(infos, old, options.read_workers)
    summary = {
        "collection": collection,
        "store": config.get("output", str(store)),
        "time_steps": len(entries),
        "written": len(todo),
        "skipped": len(entries) - len(todo),
        "input_files": sum(len(e["files"]) for e in entries),
        "header_corrections": sorted({c for e in entries for c in e["corrections"]}),
    }
    if dry_run:
        return summary
    comp = S.compressor(options.compressor, options.zarr_format)
    if old is None:
        S.remove_store(store)
        S.create_store(
            store,
            layout,
            static=static,
            grid=grid,
            n_times=len(entries),
            chunks=options.chunks,
            zarr_format=options.zarr_format,
            comp=comp,
        )
    else:
        S.remove_partials(store)
        S.drop_consolidated(store)
    with S.quiet_zarr(), zarr.config.set(S.WRITE_CONFIG):
        group = zarr.open_group(store, mode="r+", use_consolidated=False)
        for arr in S.time_arrays(group):
            if arr.shape[0] != len(entries):
                arr.resize((len(entries), *arr.shape[1:]))
        for idx, _ in todo:
            group[S.COMPLETE][idx : idx + 1] = np.zeros(1, dtype=np.uint8)

        cost = {"bytes": 0, "seconds": 0.0, "at": 0.0}

        def save() -> None:
            t0 = time.monotonic()
            attrs = _attrs(collection, options, layout.kind, static, grid, ref, entries, config)
            S.write_attrs(store, attrs)
            cost.update(bytes=len(json.dumps(attrs)), seconds=time.monotonic() - t0, at=t0)

        def due() -> bool:
            # a small manifest is saved after every step; a large one at most ~5 % of the time
            if cost["bytes"] < MANIFEST_SMALL:
                return True
            return time.monotonic() - cost["at"] > 20 * cost["seconds"]

        save()  # steps being written have no checksums yet: a rerun redoes them
        group = zarr.open_group(store, mode="r+", use_consolidated=False)
        # the arrays opened once: ``group[name]`` reads and parses their metadata every time
        handles = {a.basename: a for a in S.time_arrays(group)}
        bar = tqdm(
            total=sum(i.nbytes for _, i in todo),
            desc=f"fits_to_zarr@{collection}",
            unit="B",
            unit_scale=True,
            disable=not progress,
        )
        # steps in different time chunks can be written at once (two with chunks.time=1);
        # steps sharing a chunk must not be, or one read-modify-write would undo the other
        n_writers = STEP_WRITERS if options.chunks.time == 1 else 1
        pending: deque[tuple[Future, int, StepInfo, dict[str, Any], dict[str, str]]] = deque()

        def finish() -> None:
            fut, idx, info, arrays, sums = pending.popleft()
            fut.result()
            layout.release(arrays)
            entries[idx] = {**entries[idx], "files": sums}
            if due():
                save()
            bar.update(info.nbytes)
            log.debug("wrote time step %s at index %d", info.key, idx)

        with (
            ThreadPoolExecutor(1, thread_name_prefix="step-read") as readers,
            ThreadPoolExecutor(n_writers, thread_name_prefix="step-write") as writers,
        ):
            # read (and hash) the next step while earlier ones are compressed and written
            ahead: Future | None = readers.submit(layout.read, todo[0][1]) if todo else None
            for k, (idx, info) in enumerate(todo):
                assert ahead is not None
                arrays, sums = ahead.result()
                nxt = todo[k + 1][1] if k + 1 < len(todo) else None
                ahead = readers.submit(layout.read, nxt) if nxt is not None else None
                fut = writers.submit(_write_step, handles, layout, idx, info, arrays)
                pending.append((fut, idx, info, arrays, sums))
                while len(pending) >= n_writers:
                    finish()
            while pending:
                finish()
        bar.close()
        save()
        zarr.consolidate_metadata(store, zarr_format=options.zarr_format)
    log.info("%s: %d time steps written, %d skipped (done)", store, len(todo), summary["skipped"])
    return summary
