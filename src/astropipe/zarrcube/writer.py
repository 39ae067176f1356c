"""Build or extend a collection's Zarr store one time step at a time.

Protocol (crash-safe, append without rewriting, nothing deleted implicitly):

1. Take ``<store>.lock``; drop ``*.partial`` files a killed zarr write left.
2. Scan every input's headers (no pixels) and check grids, frequencies, Stokes, truncation.
3. Decide what to do with an existing store (:mod:`~astropipe.zarrcube.existing`): extend it,
   or refuse (unreadable, not ours, another layout) unless ``zarr.rebuild`` is ``true``. Verify
   the SHA-256 of every recorded chunk; a damaged chunk's time steps are rewritten from their
   inputs (refused, naming the chunk, when those are gone).
4. Merge with the manifest: the target is every recorded time step plus every input time step,
   sorted by key. A step is skipped when it keeps its index, its ``step_complete`` flag is 1,
   its chunks are intact, and its files still have the recorded SHA-256 (hashed now).
5. Save the manifest (steps to write without checksums, their chunks' checksums dropped), delete
   damaged chunks, resize the time axis, clear ``step_complete`` of the steps to (re)write; then
   each step is a task on ``compute.scheduler`` (:mod:`~astropipe.zarrcube.steps`): read its
   files once (hash + decode), write its arrays at its index; as the results come back, in
   order, this process sets the step's ``step_complete`` and records the checksums of its
   files and of the chunks it filled.
6. Save the manifest, consolidate the metadata.

A new store (or an explicit rebuild) is created beside its final path and moved in once its
manifest exists, so a crash never leaves a store without one. A crash anywhere else leaves
``step_complete = 0`` or no checksum on any step not entirely written, so a rerun redoes it;
steps finished before the crash are not touched. Since the store is a function of the sorted
set of time steps only, the order and batching of inputs and the scheduler do not change a
byte. Peak memory is one time step per running task, plus up to three reusable step buffers
per worker process.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from astropipe import __version__
from astropipe.compute import ComputeConfig, Workers, workers
from astropipe.errors import ConfigError, GridMismatchError, MissingInputError
from astropipe.progress import bar as progress_bar
from astropipe.provenance import provenance, relpath
from astropipe.zarrcube import store as S
from astropipe.zarrcube.chunks import RecordingStore, chunk_refs, describe, hash_chunks
from astropipe.zarrcube.config import ChunksConfig, CompressorConfig
from astropipe.zarrcube.encode import ChunkSpec, Unsupported
from astropipe.zarrcube.existing import Damage, assess, open_existing
from astropipe.zarrcube.grid import Grid, check_grid
from astropipe.zarrcube.layouts import STORE_VERSIONS, Layout, StepInfo
from astropipe.zarrcube.lock import StoreLock
from astropipe.zarrcube.manifest import ATTR, COMPLETE, Manifest, TimeStep
from astropipe.zarrcube.steps import (
    StepResult,
    StepTask,
    file_digests,
    forget_layouts,
    scan_step,
    write_array,
    write_steps,
)

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

    def __post_init__(self) -> None:
        # the only switch that deletes a store: a string such as "no" must never count as true
        if not isinstance(self.rebuild, bool):
            raise ConfigError(
                f"zarr.rebuild: expected true or false, found {self.rebuild!r}; "
                "set zarr.rebuild=true to replace the store, false to extend it."
            )

    def record(self, kind: str) -> dict[str, Any]:
        """The options that define the bytes of the store, as stored in its manifest."""
        return {
            "kind": kind,
            "version": STORE_VERSIONS.get(kind, 1),
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


def _entry(info: StepInfo) -> TimeStep:
    return TimeStep(
        key=info.key,
        time_mjd=info.time_mjd,
        files=dict(sorted(info.files.items())),
        corrections=tuple(info.corrections),
        wcs=dict(info.wcs),
    )


def _scan(layout: Layout, files: list[Path], pool: Workers, progress: bool) -> list[StepInfo]:
    specs = layout.group(files)
    it = pool.map(scan_step, specs, kind=layout.kind, read_workers=layout.read_workers)
    bar = progress_bar(it, total=len(specs), desc="headers", unit="step", enabled=progress)
    return [_localized(info) for info in bar]


def _localized(info: StepInfo) -> StepInfo:
    """A scanned step with its file names relative to this process's working directory."""
    return dataclasses.replace(
        info,
        files=dict(sorted((relpath(k), v) for k, v in info.files.items())),
        grid_file=relpath(info.grid_file),
    )


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


def _check_repairable(
    store: Path, old: Manifest, damage: Damage, infos: list[StepInfo], input_dir: str
) -> None:
    """Refuse (changing nothing) when a damaged step's input files are not all inputs now."""
    new = {i.key: set(i.files) for i in infos}
    for idx, key in damage.steps.items():
        step = old.timesteps[idx]
        if new.get(step.key) != set(step.files):
            raise MissingInputError(
                f"{describe(store, key, damage.bad[key])}; its time step {step.key} cannot be "
                f"rewritten: its files {sorted(step.files)} are not all in {input_dir} — put "
                f"them back, restore the store with `dvc checkout {store.as_posix()}`, or set "
                "zarr.rebuild=true."
            )


def _plan(
    infos: list[StepInfo],
    old: tuple[Manifest, np.ndarray] | None,
    pool: Workers,
    damaged: Iterable[int] = (),
) -> tuple[list[TimeStep], list[tuple[int, StepInfo]]]:
    """The full manifest (one entry per target time step) and the steps to write.

    A stored step is kept when it keeps its index, is flagged complete, none of its chunks is
    ``damaged`` (stored indices), and its files still have the recorded checksums (hashed
    here, as tasks of ``pool``); any other input step is written.
    """
    flags = old[1] if old else np.zeros(0, dtype=np.uint8)
    damaged = set(damaged)
    new = {i.key: i for i in infos}
    old_entries: dict[str, tuple[int, TimeStep]] = {}
    for i, e in enumerate(old[0].timesteps if old else ()):
        finished = i < len(flags) and flags[i] == 1 and e.hashed
        if finished or e.key in new:
            old_entries[e.key] = (i, e)
        else:  # an interrupted step whose files have gone: it holds nothing worth keeping
            log.warning("dropping unfinished time step %s: its files are no longer inputs", e.key)
    keys = sorted(set(old_entries) | set(new))
    entries: list[TimeStep] = []
    todo: list[tuple[int, StepInfo]] = []
    maybe: list[tuple[int, StepInfo, TimeStep]] = []
    for idx, key in enumerate(keys):
        prev = old_entries.get(key)
        done = (
            prev is not None
            and prev[0] == idx
            and idx < len(flags)
            and flags[idx] == 1
            and idx not in damaged
        )
        if key in new:
            info = new[key]
            entries.append(_entry(info))
            if done and set(prev[1].files) == set(info.files) and prev[1].hashed:
                maybe.append((idx, info, prev[1]))
            else:
                todo.append((idx, info))
            continue
        assert prev is not None
        if not done:
            why = "moves to another index" if prev[0] != idx else "is incomplete"
            raise MissingInputError(
                f"stored time step {key} {why} but its files {sorted(prev[1].files)} are not "
                "among the inputs; put them back in the input directory, or set zarr.rebuild=true."
            )
        entries.append(prev[1])
    sums = pool.map(file_digests, [m[1].paths for m in maybe])
    for (idx, info, prev), digests in zip(maybe, sums, strict=True):
        got = dict(sorted((relpath(p), d) for p, d in zip(info.paths, digests, strict=True)))
        if got == prev.files:
            entries[idx] = prev
        else:
            todo.append((idx, info))
    return entries, sorted(todo, key=lambda t: t[0])


def _attrs(
    collection: str, opts: WriteOptions, kind: str, static: dict, grid: Grid,
    entries: list[TimeStep], chunk_sums: dict[str, str], config: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    inputs = {f: h for e in entries for f, h in e.files.items()}
    ref = sorted(entries[0].files)[0]  # the first file of the series, whatever the batching
    manifest = Manifest(
        collection=collection,
        layout=opts.record(kind),
        static={**static, "grid": grid.to_attrs(), "grid_file": ref},
        timesteps=tuple(entries),
        chunk_sha256=chunk_sums,
        header_corrections=tuple(sorted({c for e in entries for c in e.corrections})),
        provenance=provenance(stage="fits_to_zarr", inputs=inputs, params=config),
    )
    attrs = {
        "Conventions": "CF-1.10",
        "title": f"astropipe fits_to_zarr collection {collection!r}",
        "source": f"astropipe {__version__} fits_to_zarr",
        # the WCS of the first time step; a step's own is manifest.step_wcs(i)
        "wcs": grid.with_cards(entries[0].wcs).to_attrs()["wcs"],
        ATTR: manifest.to_json(),
    }
    if any(e.wcs for e in entries):
        attrs["direction"] = _direction(grid)
    return attrs


def _direction(grid: Grid) -> dict[str, Any]:
    """The sky reference of a zenith-phased store, after xradio's image ``direction``."""
    w = grid.wcs
    return {
        "projection": str(w.get("CTYPE1", ""))[-3:],
        "system": str(w.get("RADESYS", "FK5" if "EQUINOX" in w else "ICRS")),
        **({"equinox": w["EQUINOX"]} if "EQUINOX" in w else {}),
        "lonpole": w.get("LONPOLE"),
        "latpole": w.get("LATPOLE"),
        "pc": [
            [w.get("PC1_1", 1.0), w.get("PC1_2", 0.0)],
            [w.get("PC2_1", 0.0), w.get("PC2_2", 1.0)],
        ],
        "reference": "phase_center_ra(time), phase_center_dec(time) in deg (CRVAL1, CRVAL2 per "
        "time step); l = m = 0 there",
        "l": "((x + 1) - CRPIX1) * CDELT1 * pi/180 rad, x = 0-based pixel along FITS axis 1",
        "m": "((y + 1) - CRPIX2) * CDELT2 * pi/180 rad, y = 0-based pixel along FITS axis 2",
    }


#: manifests smaller than this (bytes of JSON) are saved after every written step
MANIFEST_SMALL = 1 << 18
#: the value of a written step's ``step_complete`` flag
_ONE = np.ones(1, dtype=np.uint8)[0]


@contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep the objects alive before the write loop out of the cyclic GC's full passes.

    zarr's async machinery allocates many small containers per chunk, so the GC runs often;
    without this each of its oldest-generation passes walks every module object loaded (astropy,
    xarray, dask…): ~4 % of a conversion's CPU. Nothing is leaked: frozen objects were
    reachable anyway, and ``unfreeze`` returns them to the collector.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _direct_specs(
    handles: dict[str, zarr.Array], order: list[str], per_chunk: int
) -> dict[str, ChunkSpec] | None:
    """Chunk specs of every time array (in write ``order``, then the rest) when steps can be
    written without zarr, else None."""
    if per_chunk != 1:
        return None  # a time chunk shared by steps is read, modified and written: zarr does it
    names = [n for n in order if n in handles] + sorted(set(handles) - set(order))
    try:
        return {name: ChunkSpec.of(handles[name]) for name in names}
    except Unsupported as exc:
        log.info("chunks written through zarr: %s", exc)
        return None


def _tasks(
    todo: list[tuple[int, StepInfo]],
    store: Path,
    layout: Layout,
    per_chunk: int,
    specs: dict[str, ChunkSpec] | None,
) -> Iterator[StepTask]:
    """One task per step (direct writes), or per time chunk (the steps that share it)."""
    base = {
        "store": str(store.absolute()),
        "kind": layout.kind,
        "tile": layout.tile,
        "read_workers": layout.read_workers,
        "specs": None if specs is None else tuple(v for k, v in specs.items() if k != COMPLETE),
    }
    group: list[tuple[int, StepInfo]] = []
    for idx, info in todo:
        if group and (specs is not None or group[-1][0] // per_chunk != idx // per_chunk):
            yield StepTask(steps=tuple(group), **base)
            group = []
        group.append((idx, info))
    if group:
        yield StepTask(steps=tuple(group), **base)


def write_collection(
    layout: Layout,
    files: Iterable[Path],
    store: Path,
    *,
    collection: str,
    options: WriteOptions,
    config: dict[str, Any],
    compute: ComputeConfig | None = None,
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
    compute
        Where the per-step work runs (:mod:`astropipe.compute`; default: 2 threads). Tasks
        read input files and write chunk files by absolute path: cluster workers must see
        the same file system.
    progress
        Show progress bars on stderr (:mod:`astropipe.progress`; never in outputs or metrics).
    dry_run
        Scan, verify and plan only; write nothing.

    Raises
    ------
    LockedError, GridMismatchError, InputFileError, MissingInputError, ConfigError
    """
    # absolute: tasks may run in another working directory (recorded paths stay relative)
    files = sorted(Path(f).absolute() for f in files)
    layout.tile = options.chunks.sky  # images are read straight into chunk-sized tiles
    cfg = compute or ComputeConfig()
    try:
        with StoreLock(store), workers(cfg) as pool:
            try:
                return _write_locked(
                    layout, files, store, collection, options, config, pool, progress, dry_run
                )
            finally:
                _forget_on_cluster(pool, cfg.address)
    finally:
        layout.close()
        if cfg.scheduler in ("synchronous", "threads"):
            forget_layouts()  # the reusable step buffers of this process's tasks


def _forget_on_cluster(pool: Workers, address: str | None) -> None:
    """Release the step buffers and read threads the tasks left on a cluster's workers (their
    processes outlive the run; those of ``processes`` end with the pool)."""
    if pool.kind != "distributed" or pool.client is None:
        return
    try:
        pool.client.run(forget_layouts)
    except (OSError, TimeoutError) as exc:  # the run's own outcome stands: only logged
        log.warning(
            "compute.address=%s: could not release the step buffers on the cluster's workers "
            "(%s: %s); they are freed when the workers restart",
            address,
            type(exc).__name__,
            exc,
        )


def _write_locked(
    layout: Layout,
    files: list[Path],
    store: Path,
    collection: str,
    options: WriteOptions,
    config: dict[str, Any],
    pool: Workers,
    progress: bool,
    dry_run: bool,
) -> dict[str, Any]:
    infos = _scan(layout, files, pool, progress)
    old = open_existing(store, options.record(layout.kind), rebuild=options.rebuild)
    damage = Damage()
    if old is not None:
        damage = assess(store, old, workers=options.read_workers)
        input_dir = str(config.get("collection", {}).get("input_dir", "the input directory"))
        _check_repairable(store, old, damage, infos, input_dir)
        static = {k: v for k, v in old.static.items() if k not in ("grid", "grid_file")}
        grid, ref = Grid.from_attrs(old.static["grid"]), old.static["grid_file"]
    else:
        static, grid, ref = infos[0].static, infos[0].grid, infos[0].grid_file
    for info in infos:
        check_grid(grid, ref, info.grid, info.grid_file)
        _check_static(static, ref, info)
    # damaged chunks read as missing: a damaged step_complete chunk gives 0, never a codec error
    flags = S.read_flags(store, hidden=set(damage.bad)) if old is not None else None
    entries, todo = _plan(infos, (old, flags) if old is not None else None, pool, damage.steps)
    summary = {
        "collection": collection,
        "store": config.get("output", str(store)),
        "time_steps": len(entries),
        "written": len(todo),
        "skipped": len(entries) - len(todo),
        "repaired": len(damage.steps) + len(damage.static),
        "input_files": sum(len(e.files) for e in entries),
        "header_corrections": sorted({c for e in entries for c in e.corrections}),
    }
    if dry_run:
        return summary
    per_chunk = options.chunks.time
    touched = Counter(idx // per_chunk for idx, _ in todo)  # time chunks rewritten, steps left
    work = store
    if old is None:
        work = S.fresh_path(store)
        S.create_store(
            work,
            layout,
            static=static,
            grid=grid,
            n_times=len(entries),
            chunks=options.chunks,
            zarr_format=options.zarr_format,
            comp=S.compressor(options.compressor, options.zarr_format),
        )
        chunk_sums: dict[str, str] = {}
    else:
        S.remove_partials(store)
        S.drop_consolidated(store)
        with S.quiet_zarr():
            before = chunk_refs(zarr.open_group(store, mode="r", use_consolidated=False))
        # checksums of chunks about to change are dropped before they change (and put back
        # once they are written), so no crash leaves a checksum that no longer holds
        keep = {r.key for r in before if r.time_chunk is None or r.time_chunk not in touched}
        chunk_sums = {
            k: v for k, v in old.chunk_sha256.items() if k in keep and k not in damage.bad
        }

    cost = {"bytes": 0, "seconds": 0.0, "at": 0.0}

    def save(path: Path) -> None:
        t0 = time.monotonic()
        attrs = _attrs(collection, options, layout.kind, static, grid, entries, chunk_sums, config)
        S.write_attrs(path, attrs)
        cost.update(bytes=len(json.dumps(attrs)), seconds=time.monotonic() - t0, at=t0)

    def due() -> bool:
        # a small manifest is saved after every step; a large one at most ~5 % of the time
        if cost["bytes"] < MANIFEST_SMALL:
            return True
        return time.monotonic() - cost["at"] > 20 * cost["seconds"]

    save(work)  # steps being written have no checksums yet: a rerun redoes them
    with S.quiet_zarr(), zarr.config.set(S.WRITE_CONFIG):
        for key in sorted(damage.bad):
            # never decoded again: their steps are rewritten below (a chunk shared by several
            # time steps would otherwise be read back, and fail, on the first partial write)
            (store / key).unlink(missing_ok=True)
        if damage.static:
            S.write_static(
                store, layout, static=static, grid=grid, tile=options.chunks.sky,
                names=set(damage.static),
            )  # fmt: skip
        group = zarr.open_group(work, mode="r+", use_consolidated=False)
        for arr in S.time_arrays(group):
            if arr.shape[0] != len(entries):
                arr.resize((len(entries), *arr.shape[1:]))
        for idx, _ in todo:
            group[COMPLETE][idx : idx + 1] = np.zeros(1, dtype=np.uint8)
        # every chunk outside the time chunks being rewritten has a checksum from here on:
        # the coordinates of a new store, repaired ones, and a store written before checksums
        refs = chunk_refs(group)
        chunk_sums = {k: v for k, v in chunk_sums.items() if k in {r.key for r in refs}}
        unsummed = [
            r.key
            for r in refs
            if r.key not in chunk_sums and (r.time_chunk is None or r.time_chunk not in touched)
        ]
        chunk_sums.update(hash_chunks(work, unsummed, workers=options.read_workers))
    if old is None:
        save(work)
        S.install(work, store)  # replaces an old store only on zarr.rebuild=true
    with S.quiet_zarr(), zarr.config.set(S.WRITE_CONFIG):
        save(store)
        # writes go through a store that hashes each chunk as it is written (no read-back)
        recorder = RecordingStore(store)
        group = zarr.open_group(recorder, mode="r+", use_consolidated=False)
        # the arrays opened once: ``group[name]`` reads and parses their metadata every time
        handles = {a.basename: a for a in S.time_arrays(group)}
        bar = progress_bar(
            total=sum(i.nbytes for _, i in todo),
            desc=f"fits_to_zarr@{collection}",
            unit="B",
            unit_scale=True,
            enabled=progress,
        )
        # the image first, the time and the flag last (as zarr wrote them before)
        order = [v.name for v in layout.variables(static)] + ["time", COMPLETE]
        specs = _direct_specs(handles, order, per_chunk)
        fresh: dict[str, str] = {}  # digests of chunks written by the tasks, not yet final

        def flag(idx: int) -> None:
            # after the step's arrays are on disk: the flag says they all are
            if specs is not None:
                fresh.update(write_array(store.absolute(), specs[COMPLETE], idx, _ONE))
            else:
                handles[COMPLETE][idx : idx + 1] = _ONE[None]

        def finish(result: StepResult) -> None:
            fresh.update(result.chunks)
            for idx, sums in zip(result.indices, result.files, strict=True):
                flag(idx)
                entries[idx] = entries[idx].with_files(
                    {relpath(p): sums[p.as_posix()] for p in steps_by_idx[idx].paths}
                )
                touched[idx // per_chunk] -= 1
                bar.update(steps_by_idx[idx].nbytes)
                log.debug("wrote time step %s at index %d", entries[idx].key, idx)
            for tc in sorted({i // per_chunk for i in result.indices}):
                if touched[tc] == 0:  # the last step of its time chunks: they are final now
                    keys = [r.key for r in chunk_refs(handles, time_chunks=[tc], static=False)]
                    got = {k: fresh.pop(k) for k in keys if k in fresh}
                    got.update(recorder.take(k for k in keys if k not in got))
                    rest = [k for k in keys if k not in got]  # not written in this run: read them
                    chunk_sums.update(got)
                    chunk_sums.update(hash_chunks(store, rest, workers=options.read_workers))
            if due():
                save(store)

        steps_by_idx = dict(todo)
        with _frozen_heap():
            tasks = _tasks(todo, store, layout, per_chunk, specs)
            for result in pool.map(write_steps, tasks):
                finish(result)
        bar.close()
        save(store)
        zarr.consolidate_metadata(store, zarr_format=options.zarr_format)
    log.info("%s: %d time steps written, %d skipped (done)", store, len(todo), summary["skipped"])
    return summary
