"""Provenance: content hashes of inputs, the parameters used, and the package version.

Paths are recorded relative to the working directory (the repository root under DVC), so two
clones in different directories produce byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from astropipe import __version__
from astropipe.sources.redact import redact_params

__all__ = ["sha256_file", "sha256_bytes", "sha256_stream", "relpath", "provenance", "inputs_digest"]

#: read size when hashing a file: large unbuffered reads (hashing runs at ~1 GB/s)
_CHUNK = 1 << 22


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file, read in 4 MiB blocks.

    The one file hash of the package: input checksums in provenance, fits_to_zarr's input and
    chunk checksums, and validation's checks of them all call this (or :func:`sha256_bytes`
    on bytes already in memory), so they agree by construction.
    """
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Return the hex SHA-256 of ``data`` (any bytes-like object, hashed without a copy)."""
    return hashlib.sha256(data).hexdigest()


def sha256_stream() -> Any:
    """A running SHA-256 for bytes that arrive in pieces: ``update(piece)``, then ``hexdigest()``.

    For streamed downloads, hashed as they are written (the same digest as :func:`sha256_file`
    of the finished file).
    """
    return hashlib.sha256()


def relpath(path: str | os.PathLike[str]) -> str:
    """Return ``path`` relative to the working directory when it lies below it, else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def inputs_digest(hashes: Mapping[str, str]) -> str:
    """One SHA-256 over a mapping of input name → hash, independent of insertion order."""
    return sha256_bytes(json.dumps(dict(sorted(hashes.items())), sort_keys=True).encode())


def provenance(
    *,
    stage: str,
    inputs: Mapping[str, str] | Iterable[tuple[str, str]],
    params: Mapping[str, Any],
    source: str | None = None,
    query: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the provenance record stored in every output's metadata.

    Parameters
    ----------
    stage
        Name of the stage (or library entry point) that produced the output.
    inputs
        Input name (relative path, URL, or ``tar!member``) → SHA-256.
    params
        The parameter section the stage used. URLs in it are recorded without credentials
        (:func:`astropipe.sources.redact.redact_params`).
    source, query
        For network sources: the service and the bounded query that defined the snapshot
        (redacted the same way).

    Returns
    -------
    dict
        JSON-serialisable, with sorted input keys and no wall-clock time.
    """
    items = dict(sorted(dict(inputs).items()))
    record: dict[str, Any] = {
        "astropipe_version": __version__,
        "stage": stage,
        "inputs": items,
        "inputs_sha256": inputs_digest(items),
        "params": redact_params(params),
    }
    if source is not None:
        record["source"] = source
    if query is not None:
        record["query"] = redact_params(dict(query))
    return record
