"""What fits_to_zarr may do with a store that already exists: keep, repair, or refuse.

A store is a persisted DVC output (``persist: true``): it holds time steps whose input files may
have left the input directory, so it is never deleted implicitly. The rules:

* no store, or an empty directory: build a new one;
* ``zarr.rebuild=true`` (a real boolean, nothing else): build a new one and replace the old;
* a store whose root metadata cannot be read, or without a fits_to_zarr manifest: refuse;
* a store built with another layout (kind, Zarr format, chunks, compressor, or the store
  layout version of an older astropipe): refuse, naming what differs and ``zarr.rebuild=true``;
* otherwise verify every recorded chunk checksum: damaged chunks of a time step are rewritten
  from its inputs (refused, naming the chunk, when those inputs are gone); damaged chunks of an
  array without a time axis (coordinates) are rewritten from the stored grid.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr

from astropipe.errors import ConfigError, InputFileError
from astropipe.zarrcube.chunks import ChunkRef, chunk_refs, describe, verify_chunks
from astropipe.zarrcube.manifest import Manifest, read_manifest

__all__ = ["Damage", "open_existing", "stored_layout", "layout_difference", "assess"]

log = logging.getLogger(__name__)


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def stored_layout(layout: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's layout; stores written before the version was recorded are version 1."""
    return {"version": 1, **layout}


def layout_difference(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    """``key: stored → configured`` for each layout key that differs, comma-separated."""
    a, b = _flat(stored_layout(stored)), _flat(wanted)

    def one(k: str) -> str:
        if k == "version":  # not a config key: the store was written by another astropipe
            return (
                f"store layout version: {a.get(k)!r} stored vs {b.get(k)!r} written by this "
                "astropipe"
            )
        return f"{k}: {a.get(k, '(none)')!r} stored vs {b.get(k, '(none)')!r} configured"

    return ", ".join(one(k) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def open_existing(store: Path, wanted: Mapping[str, Any], *, rebuild: bool) -> Manifest | None:
    """The manifest of the store to extend, or None to build a new store.

    Parameters
    ----------
    store
        The store directory.
    wanted
        The layout the configuration asks for (``WriteOptions.record``).
    rebuild
        ``zarr.rebuild``; only ``True`` itself means "replace the store".

    Raises
    ------
    InputFileError
        When the store exists but is unreadable or not a fits_to_zarr store.
    ConfigError
        When the store was built with another layout.
    """
    if rebuild is True:
        return None
    if not store.exists() or (store.is_dir() and not any(store.iterdir())):
        return None
    manifest = read_manifest(store)
    if manifest is None:
        raise InputFileError(
            f"{store.as_posix()}: exists but holds no fits_to_zarr manifest (not a store this "
            "stage wrote); nothing was changed — move it away, or set zarr.rebuild=true to "
            "replace it."
        )
    if stored_layout(manifest.layout) != dict(wanted):
        raise ConfigError(
            f"{store.as_posix()}: the store's layout differs from zarr config "
            f"({layout_difference(manifest.layout, wanted)}); nothing was changed — set "
            "zarr.rebuild=true to rebuild it from the inputs (the store is replaced), or "
            "restore the stored setting."
        )
    return manifest


@dataclass(frozen=True)
class Damage:
    """Chunks whose bytes differ from the manifest, and what they belong to."""

    bad: dict[str, str] = field(default_factory=dict)  # chunk key → MISSING / CHANGED
    steps: dict[int, str] = field(default_factory=dict)  # stored step index → first bad key
    static: frozenset[str] = frozenset()  # arrays without a time axis to write again

    def __bool__(self) -> bool:
        return bool(self.bad)


def assess(store: Path, manifest: Manifest, *, workers: int) -> Damage:
    """Verify every recorded chunk of ``store``; map the damaged ones to steps and arrays.

    Only raw bytes are read (hashed): nothing is decoded.
    """
    bad = verify_chunks(store, manifest.chunk_sha256, workers=workers)
    if not bad:
        return Damage()
    group = zarr.open_group(store, mode="r", use_consolidated=False)
    refs: dict[str, ChunkRef] = {r.key: r for r in chunk_refs(group)}
    per_chunk = manifest.time_chunk
    n = len(manifest.timesteps)
    steps: dict[int, str] = {}
    static: set[str] = set()
    for key, reason in bad.items():
        log.warning("%s", describe(store, key, reason))
        ref = refs.get(key)
        if ref is None:  # recorded, but no longer part of any array: nothing reads it
            continue
        if ref.time_chunk is None:
            static.add(ref.array)
            continue
        start = ref.time_chunk * per_chunk
        for idx in range(start, min(start + per_chunk, n)):
            steps.setdefault(idx, key)
    return Damage(bad=bad, steps=dict(sorted(steps.items())), static=frozenset(static))
