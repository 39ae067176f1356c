"""The per-time-step work of fits_to_zarr as tasks for :func:`astropipe.compute.workers`.

A :class:`StepTask` reads the FITS files of one time step (hashed and decoded from one
buffer), encodes its chunks and writes them into the store by absolute path, and returns a
:class:`StepResult`: the SHA-256 of its files and of every chunk it wrote. It never touches
the manifest, the ``step_complete`` flags or the lock: the client (the writer) keeps those,
in time-step order, so the store's bytes do not depend on where or in which order tasks run.

Two ways to write, chosen by the client:

- **direct** (``specs`` given; ``chunks.time = 1`` and the encodings of
  :mod:`astropipe.zarrcube.encode`): every chunk of the step is whole, so it is encoded and
  written here without zarr;
- **zarr** (``specs`` None; e.g. ``chunks.time > 1``): zarr writes the steps' regions (a time
  chunk shared by several steps is read, modified and written back), so one task holds all the
  steps of one time chunk being written and no two tasks touch the same chunk.

Each worker process keeps one layout per (kind, tile, read workers) between tasks: its read
buffers and step arrays are reused (fresh 50 MB allocations per step cost more in page
faults than the copies). :func:`forget_layouts` releases them at the end of a write (in every
worker of a cluster: its processes outlive the run); a layout still in use by a task (another
run on the same cluster) is closed when that task ends. Inside a task the files of a step are
read by ``read_workers`` local threads (reading, hashing and byte-swapping release the GIL);
parallelism across steps comes from the pool.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from astropipe.provenance import sha256_file
from astropipe.zarrcube.chunks import RecordingStore
from astropipe.zarrcube.discover import StepSpec
from astropipe.zarrcube.encode import ChunkSpec, write_chunk
from astropipe.zarrcube.layouts import Layout, StepInfo, Tiled, layout_for

__all__ = [
    "StepTask",
    "StepResult",
    "write_steps",
    "write_array",
    "file_digests",
    "scan_step",
    "forget_layouts",
    "layouts_kept",
]


@dataclass(frozen=True)
class StepTask:
    """Write the arrays of some time steps (not their ``step_complete`` flags).

    Attributes
    ----------
    store
        Absolute path of the store directory.
    kind, tile, read_workers
        The layout to read with (``lwa``/``ccd``), its sky tile (``chunks.sky``) and threads.
    steps
        ``(index along time, StepInfo with absolute paths)`` of each step, in index order.
    specs
        Encoding of every time-dependent array but ``step_complete`` (direct writes), or None
        for writes through zarr.
    """

    store: str
    kind: str
    tile: int | None
    read_workers: int
    steps: tuple[tuple[int, StepInfo], ...]
    specs: tuple[ChunkSpec, ...] | None = None


@dataclass(frozen=True)
class StepResult:
    """What a :class:`StepTask` wrote.

    Attributes
    ----------
    indices
        The time indices written, in order.
    files
        Per step: absolute POSIX path of each input file → SHA-256 of the bytes decoded.
    chunks
        Store-relative chunk key → SHA-256 of the bytes written (last write of each key).
    """

    indices: tuple[int, ...]
    files: tuple[dict[str, str], ...]
    chunks: dict[str, str]


_LAYOUTS: dict[tuple[str, int | None, int], Layout] = {}
#: tasks running with each layout, by ``id``; a forgotten layout is closed by its last task
_USERS: dict[int, int] = {}
_LAYOUTS_LOCK = threading.Lock()


@contextlib.contextmanager
def _layout(kind: str, tile: int | None, read_workers: int) -> Iterator[Layout]:
    """This process's layout for ``(kind, tile, read_workers)``, held for one task."""
    key = (kind, tile, read_workers)
    with _LAYOUTS_LOCK:
        layout = _LAYOUTS.get(key)
        if layout is None:
            layout = _LAYOUTS[key] = layout_for(kind, read_workers=read_workers)
            layout.tile = tile
        _USERS[id(layout)] = _USERS.get(id(layout), 0) + 1
    try:
        yield layout
    finally:
        with _LAYOUTS_LOCK:
            _USERS[id(layout)] -= 1
            orphan = _USERS[id(layout)] == 0 and _LAYOUTS.get(key) is not layout
            if _USERS[id(layout)] == 0:
                del _USERS[id(layout)]
        if orphan:  # forgotten while this task used it
            layout.close()


def forget_layouts() -> int:
    """Drop the layouts this process keeps for tasks and close those no task is using (their
    threads and reusable buffers); the others are closed when their last task ends.

    Returns
    -------
    int
        How many layouts were dropped.
    """
    with _LAYOUTS_LOCK:
        layouts = list(_LAYOUTS.values())
        _LAYOUTS.clear()
        idle = [layout for layout in layouts if id(layout) not in _USERS]
    for layout in idle:
        layout.close()
    return len(layouts)


def layouts_kept() -> int:
    """How many layouts this process keeps for tasks (a test's view of the cache)."""
    with _LAYOUTS_LOCK:
        return len(_LAYOUTS)


def _time_value(info: StepInfo) -> np.ndarray:
    return np.array(info.time_mjd, dtype=np.float64)  # one step: no time axis


def _blocks(value: Any, spec: ChunkSpec) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """``(chunk coords without time, values)`` of every chunk of one step of an array."""
    inner = spec.chunks[1:]
    if isinstance(value, Tiled):
        lead = inner[:-2]
        for sa, sb, tile in value.tiles:
            sky = (sa.start // inner[-2], sb.start // inner[-1])
            for coords in np.ndindex(*(-(-n // c) for n, c in zip(tile.shape, lead, strict=False))):
                sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, lead, strict=True))
                yield (*coords, *sky), tile[sel]
        return
    arr = np.asarray(value)
    for coords in np.ndindex(*(-(-n // c) for n, c in zip(arr.shape, inner, strict=True))):
        sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, inner, strict=True))
        yield coords, arr[(*sel, ...)]  # an array even for 0-d values (a str would not do)


def _aligned(value: Tiled, spec: ChunkSpec) -> bool:
    """Each tile is one chunk along both sky dims (a dim shorter than the tile: one chunk)."""
    dims = zip(value.shape[-2:], spec.chunks[-2:], strict=True)
    return all(value.tile == c or (value.tile >= n and c == n) for n, c in dims)


def write_array(root: Path, spec: ChunkSpec, idx: int, value: Any) -> dict[str, str]:
    """Encode and write every chunk of time step ``idx`` of one array; key → SHA-256."""
    if isinstance(value, Tiled) and not _aligned(value, spec):
        value = np.asarray(value)  # never from the writer (it sets the tile to chunks.sky)
    out: dict[str, str] = {}
    for coords, block in _blocks(value, spec):
        key = spec.key((idx, *coords))
        out[key] = write_chunk(root, key, spec.encode(block[None]))
    return out


def _write_direct(task: StepTask, layout: Layout) -> StepResult:
    root = Path(task.store)
    assert task.specs is not None
    files: list[dict[str, str]] = []
    chunks: dict[str, str] = {}
    for idx, info in task.steps:
        arrays, sums = layout.read(info)
        try:
            values = {**arrays, "time": _time_value(info)}
            for spec in task.specs:
                chunks.update(write_array(root, spec, idx, values[spec.name]))
        finally:
            layout.release(arrays)
        files.append(sums)
    return StepResult(tuple(i for i, _ in task.steps), tuple(files), chunks)


def _write_zarr(task: StepTask, layout: Layout) -> StepResult:
    from astropipe.zarrcube import store as S

    recorder = RecordingStore(task.store)
    files: list[dict[str, str]] = []
    with S.quiet_zarr(), zarr.config.set(S.WRITE_CONFIG):
        group = zarr.open_group(recorder, mode="r+", use_consolidated=False)
        for idx, info in task.steps:
            arrays, sums = layout.read(info)
            try:
                for v in layout.variables(info.static):
                    value = arrays[v.name]
                    if isinstance(value, Tiled):
                        for sa, sb, block in value.tiles:
                            group[v.name][idx : idx + 1, ..., sa, sb] = block[None]
                    else:
                        group[v.name][idx : idx + 1] = np.asarray(value)[None]
                group["time"][idx : idx + 1] = _time_value(info)[None]
            finally:
                layout.release(arrays)
            files.append(sums)
    return StepResult(tuple(i for i, _ in task.steps), tuple(files), dict(recorder.written))


def write_steps(task: StepTask) -> StepResult:
    """Read, encode and write the steps of ``task`` (a task for :meth:`Workers.map`)."""
    with _layout(task.kind, task.tile, task.read_workers) as layout:
        if task.specs is not None:
            return _write_direct(task, layout)
        return _write_zarr(task, layout)


def file_digests(paths: tuple[Path, ...]) -> tuple[str, ...]:
    """SHA-256 of each file, in the order given (a task: no path made relative here)."""
    return tuple(sha256_file(p) for p in paths)


def scan_step(spec: StepSpec, *, kind: str, read_workers: int) -> StepInfo:
    """:meth:`Layout.scan` of one time step (a task: headers only, no pixels)."""
    with _layout(kind, None, read_workers) as layout:
        return layout.scan(spec)
