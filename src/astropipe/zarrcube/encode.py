"""Encode and write whole chunks of a store ourselves: the bytes zarr would write, fewer copies.

fits_to_zarr writes every chunk of a time step whole (``chunks.time = 1``, no fill-value
check). For that case zarr's write path costs a fifth of a conversion's CPU in asyncio and
buffer plumbing around the two calls that matter (the compressor and the file write), so a
time step's task encodes each chunk here: pad an edge chunk with the fill value, lay it out
little-endian in C order, compress it with the numcodecs codec zarr itself uses, write it to
``<key>.<uuid>.partial`` and rename it into place (as :class:`zarr.storage.LocalStore` does).

:class:`ChunkSpec` is read from the array's zarr metadata by the client and shipped to the
workers (plain, picklable values). It supports what :func:`astropipe.zarrcube.store.create_store`
creates: format 3 with the ``bytes`` codec plus at most one of blosc, zstd or gzip (default
chunk key encoding), format 2 with at most one compressor and no filters. Anything else
raises :class:`Unsupported` and the writer falls back to zarr. The bytes are the same as
zarr's (tests/test_zarr_encode.py compares them chunk by chunk for every compressor, both
formats, edge chunks, strings and unsigned integers).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from astropipe.provenance import sha256_bytes

__all__ = ["ChunkSpec", "Unsupported", "write_chunk"]


class Unsupported(ValueError):
    """An array whose encoding :class:`ChunkSpec` does not reproduce (zarr writes it)."""


def _v3_codec(arr: zarr.Array) -> dict[str, Any] | None:
    codecs = list(arr.metadata.codecs)
    first = codecs.pop(0).to_dict() if codecs else {}
    endian = (first.get("configuration") or {}).get("endian", "little")
    if first.get("name") != "bytes" or endian not in ("little", None):
        raise Unsupported(f"{arr.path}: codecs {arr.metadata.codecs} (expected bytes first)")
    if not codecs:
        return None
    if len(codecs) > 1:
        raise Unsupported(f"{arr.path}: more than one codec after bytes")
    spec = codecs[0].to_dict()
    name, conf = spec["name"], dict(spec.get("configuration") or {})
    if name == "blosc":
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[str(conf["shuffle"])]
        return {
            "id": "blosc",
            "cname": str(conf["cname"]),
            "clevel": int(conf["clevel"]),
            "shuffle": shuffle,
            "blocksize": int(conf.get("blocksize", 0)),
            "typesize": int(conf["typesize"]),
        }
    if name == "zstd":
        return {"id": "zstd", "level": int(conf["level"]), "checksum": bool(conf["checksum"])}
    if name == "gzip":
        return {"id": "gzip", "level": int(conf["level"])}
    raise Unsupported(f"{arr.path}: codec {name!r}")


def _v2_codec(arr: zarr.Array) -> dict[str, Any] | None:
    meta = arr.metadata
    if meta.filters or meta.order != "C":
        raise Unsupported(f"{arr.path}: filters {meta.filters} or order {meta.order}")
    return None if meta.compressor is None else dict(meta.compressor.get_config())


@dataclass(frozen=True)
class ChunkSpec:
    """How the chunks of one array are padded, encoded and named.

    Attributes
    ----------
    name
        Array name (the first part of every chunk key).
    shape, chunks
        Array shape and chunk shape.
    dtype
        Stored numpy dtype (``<f4``, ``<U16``…).
    fill
        Value of the pixels of an edge chunk that lie outside the array.
    codec
        numcodecs configuration of the compressor, None for none.
    zarr_format
        2 or 3: format 3 compresses the chunk's bytes, format 2 the typed array (as zarr does).
    prefix, separator
        Chunk key encoding: ``c`` + ``/`` (format 3 default) or ``""`` + ``.`` (format 2).
    """

    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    fill: Any
    codec: dict[str, Any] | None
    zarr_format: int
    prefix: str
    separator: str

    @classmethod
    def of(cls, arr: zarr.Array) -> ChunkSpec:
        """The spec of an opened array.

        Raises
        ------
        Unsupported
            When the array uses an encoding this module does not reproduce.
        """
        meta = arr.metadata
        dtype = np.dtype(meta.dtype.to_native_dtype())
        if dtype.hasobject or dtype.byteorder == ">":
            raise Unsupported(f"{arr.path}: dtype {dtype}")
        if meta.zarr_format == 3:
            enc = meta.chunk_key_encoding
            if enc.name != "default":
                raise Unsupported(f"{arr.path}: chunk key encoding {enc.name!r}")
            codec, prefix, sep = _v3_codec(arr), "c", str(enc.separator)
        else:
            codec, prefix, sep = _v2_codec(arr), "", str(meta.dimension_separator)
        fill = arr.fill_value
        spec = cls(
            name=arr.basename,
            shape=tuple(arr.shape),
            chunks=tuple(arr.chunks),
            dtype=dtype.newbyteorder("<").str if dtype.itemsize > 1 else dtype.str,
            fill=(0 if fill is None else fill.item() if isinstance(fill, np.generic) else fill),
            codec=codec,
            zarr_format=meta.zarr_format,
            prefix=prefix,
            separator=sep,
        )
        probe = tuple(range(len(spec.chunks)))
        if spec.key(probe) != f"{spec.name}/{meta.encode_chunk_key(probe)}":
            raise Unsupported(f"{arr.path}: chunk keys {meta.encode_chunk_key(probe)!r}")
        return spec

    def key(self, coords: tuple[int, ...]) -> str:
        """The store-relative key of the chunk at ``coords`` (chunk indices)."""
        parts = [self.prefix] if self.prefix else []
        return f"{self.name}/{self.separator.join([*parts, *map(str, coords)])}"

    def encode(self, block: np.ndarray) -> bytes | memoryview:
        """The stored bytes of a chunk whose values are ``block`` (an edge chunk may be smaller).

        A block of the full chunk shape, already C-contiguous in the stored dtype, is compressed
        without a copy.
        """
        dtype = np.dtype(self.dtype)
        if block.shape != self.chunks:
            full = np.full(self.chunks, self.fill, dtype=dtype)
            full[tuple(slice(0, n) for n in block.shape)] = block
            block = full
        block = np.ascontiguousarray(block, dtype=dtype)
        if self.zarr_format == 3:
            block = block.reshape(-1).view(np.uint8)
        if self.codec is None:
            return memoryview(block).cast("B")
        return _codec(self.codec).encode(block)


_CODECS: dict[str, Any] = {}


def _codec(config: dict[str, Any]) -> Any:
    import numcodecs

    key = repr(sorted(config.items()))
    codec = _CODECS.get(key)
    if codec is None:
        codec = _CODECS[key] = numcodecs.get_codec(dict(config))
    return codec


def write_chunk(root: Path, key: str, data: bytes | memoryview) -> str:
    """Write ``data`` as chunk ``key`` of the store at ``root``; return its SHA-256.

    Written to a ``.partial`` temporary and renamed into place, so a reader (or a crash) never
    sees half a chunk; a killed write leaves only the temporary, which the next run deletes.
    The digest is taken after the write succeeded.
    """
    path = root / key
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        fh = open(tmp, "wb", buffering=0)  # noqa: SIM115 (closed below)
    except FileNotFoundError:  # the chunk's directory does not exist yet
        os.makedirs(path.parent, exist_ok=True)
        fh = open(tmp, "wb", buffering=0)  # noqa: SIM115
    try:
        with fh:
            view = memoryview(data).cast("B")
            written = 0
            while written < len(view):
                written += fh.write(view[written:])
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sha256_bytes(data)
