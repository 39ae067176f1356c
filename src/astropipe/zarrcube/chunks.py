"""Checksums of a store's chunk objects: recorded when written, verified before anything decodes.

A Zarr chunk is a compressed blob: a flipped bit or a truncated file makes the codec (blosc,
zstd) fail or, worse, decode to other numbers. fits_to_zarr records the SHA-256 of every chunk
object it writes in the store's manifest (``chunk_sha256``, keyed by the store-relative chunk
key), checks them on every rerun and rewrites what differs; ``validate`` checks them too and
names the chunk instead of crashing inside the codec. Hashing reads the raw bytes only.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr
from zarr.storage import LocalStore

from astropipe.provenance import sha256_bytes, sha256_file

__all__ = [
    "ChunkRef",
    "MISSING",
    "CHANGED",
    "array_dims",
    "chunk_refs",
    "hash_chunks",
    "verify_chunks",
    "describe",
    "HidingStore",
    "RecordingStore",
]

#: reasons :func:`verify_chunks` gives
MISSING = "missing"
CHANGED = "changed"


@dataclass(frozen=True)
class ChunkRef:
    """One chunk object: its store-relative key, its array, its index along time (if any)."""

    key: str
    array: str
    time_chunk: int | None  # None: the array has no time axis


def array_dims(arr: zarr.Array) -> tuple[str, ...]:
    """Dimension names of an array (format 3 metadata, or xarray's attribute in format 2)."""
    if arr.metadata.zarr_format == 3:
        names = arr.metadata.dimension_names
    else:
        names = arr.attrs.get("_ARRAY_DIMENSIONS")
    return tuple(str(n) for n in names or ())


def chunk_refs(
    group: zarr.Group | Mapping[str, zarr.Array],
    *,
    time_chunks: Iterable[int] | None = None,
    static: bool = True,
) -> list[ChunkRef]:
    """Every chunk key of the arrays of ``group`` (sorted by array, then chunk index).

    Parameters
    ----------
    group
        A flat group, or its arrays by name (already opened: no metadata read again).
    time_chunks
        Only these chunk indices along time for time-dependent arrays (all when None).
    static
        Include the arrays without a time axis (coordinates such as ra/dec, l/m, frequency).
    """
    wanted = None if time_chunks is None else sorted(set(time_chunks))
    out: list[ChunkRef] = []
    arrays = group if isinstance(group, Mapping) else {n: group[n] for n in group.array_keys()}
    for name in sorted(arrays):
        arr = arrays[name]
        grid = arr.cdata_shape
        timed = array_dims(arr)[:1] == ("time",)
        if not timed and not static:
            continue
        axes = [range(n) for n in grid]
        if timed and wanted is not None:
            axes[0] = [t for t in wanted if t < grid[0]]  # type: ignore[assignment]
        for coords in itertools.product(*axes):
            key = f"{name}/{arr.metadata.encode_chunk_key(tuple(coords))}"
            out.append(ChunkRef(key, name, int(coords[0]) if timed else None))
    return out


def hash_chunks(store: Path, keys: Iterable[str], *, workers: int = 2) -> dict[str, str]:
    """SHA-256 of each chunk object that exists, by key (a chunk never written is left out)."""
    keys = list(keys)

    def one(key: str) -> str | None:
        try:
            return sha256_file(store / key)
        except FileNotFoundError:
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # hashing releases the GIL
        sums = list(pool.map(one, keys))
    return {k: s for k, s in zip(keys, sums, strict=True) if s is not None}


def verify_chunks(store: Path, recorded: Mapping[str, str], *, workers: int = 2) -> dict[str, str]:
    """Chunks whose bytes differ from ``recorded``: key → :data:`MISSING` or :data:`CHANGED`."""
    got = hash_chunks(store, sorted(recorded), workers=workers)
    bad: dict[str, str] = {}
    for key in sorted(recorded):
        if key not in got:
            bad[key] = MISSING
        elif got[key] != recorded[key]:
            bad[key] = CHANGED
    return bad


def describe(store: Path, key: str, reason: str) -> str:
    """``<store>/<key>: <what is wrong>`` for messages."""
    what = (
        "chunk is missing"
        if reason == MISSING
        else "chunk bytes differ from the SHA-256 recorded when it was written (bit flip or "
        "truncation)"
    )
    return f"{store.as_posix()}/{key}: {what}"


class HidingStore(LocalStore):
    """A read-only :class:`~zarr.storage.LocalStore` that reads the given chunks as missing.

    A missing chunk decodes to the array's fill value (NaN for images, 0 for flags), so a store
    with damaged chunks can be read around them without the codec ever seeing their bytes.
    """

    def __init__(self, root: str | os.PathLike[str], hidden: Iterable[str] = ()) -> None:
        super().__init__(Path(root), read_only=True)
        self.hidden = frozenset(hidden)

    def with_read_only(self, read_only: bool = False) -> HidingStore:  # noqa: D102
        return HidingStore(self.root, self.hidden)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, HidingStore)
            and self.root == other.root
            and self.hidden == other.hidden
        )

    __hash__ = None  # type: ignore[assignment]

    def get_sync(self, key: str, **kwargs: Any) -> Any:  # noqa: D102
        return None if key in self.hidden else super().get_sync(key, **kwargs)

    async def get(self, key: str, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        return None if key in self.hidden else await super().get(key, *args, **kwargs)

    async def get_partial_values(self, prototype: Any, key_ranges: Iterable[Any]) -> list[Any]:  # noqa: D102
        ranges = list(key_ranges)
        shown = [(k, r) for k, r in ranges if k not in self.hidden]
        got = iter(await super().get_partial_values(prototype, shown))
        return [None if k in self.hidden else next(got) for k, _ in ranges]

    async def exists(self, key: str) -> bool:  # noqa: D102
        return False if key in self.hidden else await super().exists(key)


class RecordingStore(LocalStore):
    """A local store that keeps the SHA-256 of every object it writes, by key.

    fits_to_zarr writes through it, so a chunk's checksum is computed from the bytes handed
    to the file system, once the write has succeeded, instead of reading the chunk file back
    and hashing it again. ``written`` maps store-relative keys to hex digests (latest write).
    """

    def __init__(self, root: Path | str, *, read_only: bool = False) -> None:
        super().__init__(root, read_only=read_only)
        self.written: dict[str, str] = {}

    async def _set(self, key: str, value: Any, exclusive: bool = False) -> None:  # noqa: D102
        await super()._set(key, value, exclusive=exclusive)
        # after the write: never a digest of bytes that did not reach the file
        self.written[key] = await asyncio.to_thread(sha256_bytes, value.as_buffer_like())

    def take(self, keys: Iterable[str]) -> dict[str, str]:
        """Remove and return the recorded digests of ``keys`` (those written through here)."""
        return {k: self.written.pop(k) for k in keys if k in self.written}
