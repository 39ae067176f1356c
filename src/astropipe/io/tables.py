"""Deterministic Parquet and JSON writers.

Parquet files carry an explicit pyarrow schema and, in the file metadata, the column units and
the provenance record under the key ``astropipe``. No wall-clock time is written, rows keep the
order the caller sorted them in, and compression settings are fixed, so the same table gives
the same bytes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from astropipe.errors import InputFileError, MissingInputError
from astropipe.io.atomic import atomic_path

__all__ = ["write_parquet", "read_parquet", "read_metadata", "write_json", "dumps_json"]

_META_KEY = b"astropipe"


def write_parquet(
    table: pa.Table,
    path: str | os.PathLike[str],
    *,
    provenance: Mapping[str, Any] | None = None,
    units: Mapping[str, str] | None = None,
    row_group_size: int = 1 << 20,
) -> Path:
    """Write ``table`` atomically to ``path`` with provenance and units in the file metadata.

    Parameters
    ----------
    table
        The table, already in its final schema and row order.
    path
        Destination; written through a temporary sibling and renamed.
    provenance
        Provenance record (see :func:`astropipe.provenance.provenance`).
    units
        Column name → unit string (astropy unit syntax).
    row_group_size
        Rows per row group.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    meta = dict(table.schema.metadata or {})
    meta.pop(b"pandas", None)
    meta[_META_KEY] = dumps_json(
        {"provenance": dict(provenance or {}), "units": dict(sorted((units or {}).items()))}
    ).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=3,
            row_group_size=row_group_size,
            write_statistics=True,
            use_dictionary=True,
        )
    return Path(path)


def read_parquet(path: str | os.PathLike[str]) -> pa.Table:
    """Read a Parquet file, with a clear error when it is missing or not Parquet."""
    p = Path(path)
    if not p.exists():
        raise MissingInputError(f"{p}: file not found; run the stage that writes it (dvc repro).")
    try:
        return pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(
            f"{p}: not a readable Parquet file ({exc}); re-create it or fetch it with dvc pull."
        ) from exc


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the astropipe metadata (provenance and units) stored in a Parquet file."""
    raw = pq.read_schema(path).metadata or {}
    blob = raw.get(_META_KEY)
    return json.loads(blob) if blob else {}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj


def dumps_json(obj: Any) -> str:
    """Serialise ``obj`` as stable JSON: sorted keys, NaN/inf as null, numpy scalars unwrapped."""
    return json.dumps(_jsonable(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as stable JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_json(obj), encoding="utf-8")
    return Path(path)
