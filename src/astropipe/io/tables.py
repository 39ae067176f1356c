"""Deterministic Parquet and JSON writers.

Parquet files carry an explicit pyarrow schema and, in the file metadata, the column units and
the provenance record under the key ``astropipe`` (:func:`file_metadata`). No wall-clock time is
written, rows keep the order the caller sorted them in, and compression settings are fixed, so
the same table gives the same bytes.

:func:`write_parquet` writes a whole table; :class:`ParquetRowGroups` streams one, table by
table, in row groups of a fixed number of rows, for outputs that do not fit in memory. Its bytes
depend only on the rows, never on how they were handed over: each row group is made contiguous
before it is written (Arrow's writer splits pages at chunk boundaries), so a table smaller than
one row group is byte-identical to :func:`write_parquet` of the same table in one chunk.
"""

from __future__ import annotations

import contextlib
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

__all__ = [
    "write_parquet", "ParquetRowGroups", "file_metadata", "read_parquet", "open_parquet",
    "read_metadata", "write_json", "dumps_json",
]  # fmt: skip

_META_KEY = b"astropipe"

#: The writer settings of every Parquet output (fixed: the same rows give the same bytes).
_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "write_statistics": True,
    "use_dictionary": True,
}


def file_metadata(
    provenance: Mapping[str, Any] | None = None, units: Mapping[str, str] | None = None
) -> dict[bytes, bytes]:
    """The schema metadata of an astropipe Parquet file: provenance and units as JSON.

    Parameters
    ----------
    provenance
        Provenance record (see :func:`astropipe.provenance.provenance`).
    units
        Column name → unit string (astropy unit syntax); stored sorted by name.

    Returns
    -------
    dict
        ``{b"astropipe": <stable JSON>}``, as :func:`write_parquet` and
        :class:`ParquetRowGroups` store it.
    """
    blob = {"provenance": dict(provenance or {}), "units": dict(sorted((units or {}).items()))}
    return {_META_KEY: dumps_json(blob).encode()}


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
    meta.update(file_metadata(provenance, units))
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size, **_WRITE_OPTIONS)
    return Path(path)


class ParquetRowGroups:
    """Write a Parquet file table by table, in row groups of exactly ``rows`` rows (the last
    one shorter), through a temporary sibling renamed into place at the end.

    Same settings as :func:`write_parquet`; the bytes depend only on the rows written and
    ``rows``, not on the sizes of the tables handed to :meth:`write` (each row group is
    combined into one chunk before it is written).

    Use as a context manager: the file is moved into place when the block ends without an
    error, and its temporary file removed otherwise (or call :meth:`close` / :meth:`abort`).
    :meth:`finish` completes the file under its temporary name (:attr:`path`), so that several
    outputs written in one :class:`contextlib.ExitStack` move into place together, only once
    all are written.

    Parameters
    ----------
    path
        Destination; written through a temporary sibling (:func:`~astropipe.io.atomic.atomic_path`).
    schema
        The file's columns; every table written must have them (any schema metadata).
    meta
        The file metadata (:func:`file_metadata`).
    rows
        Rows per row group.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: pa.Schema,
        meta: Mapping[bytes, bytes],
        *,
        rows: int,
    ) -> None:
        if rows < 1:
            raise ValueError(f"{path}: row group size {rows} < 1; give a positive number of rows.")
        self._stack = contextlib.ExitStack()
        #: the temporary file being written, renamed onto the output by :meth:`close`
        self.path: Path = self._stack.enter_context(atomic_path(path))
        self.schema = schema.with_metadata(dict(meta))
        try:
            self._writer = pq.ParquetWriter(self.path, self.schema, **_WRITE_OPTIONS)
        except BaseException:
            self._stack.__exit__(*_exc_info())
            raise
        self._rows = rows
        self._pending: list[pa.Table] = []
        self._n = 0
        #: rows handed to :meth:`write` so far
        self.num_rows = 0
        self._finished = False

    def write(self, table: pa.Table) -> None:
        """Queue ``table`` (in the file's schema, any metadata); write every full row group."""
        if table.num_rows == 0:
            return
        self._pending.append(table.replace_schema_metadata(self.schema.metadata))
        self._n += table.num_rows
        self.num_rows += table.num_rows
        while self._n >= self._rows:
            self._flush(self._rows)

    def _flush(self, n: int) -> None:
        joined = pa.concat_tables(self._pending)
        group = joined.slice(0, n).combine_chunks()  # pages never split at a chunk boundary
        self._writer.write_table(group, row_group_size=n)
        rest = joined.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._n = rest.num_rows

    def __enter__(self) -> ParquetRowGroups:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._writer.close()
            self._stack.__exit__(exc_type, exc, tb)

    def finish(self) -> Path:
        """Write the last row group and close the file, still under its temporary name."""
        if not self._finished:
            if self._n:
                self._flush(self._n)
            elif self.num_rows == 0:  # an empty table, as write_table writes it
                self._writer.write_table(self.schema.empty_table())
            self._writer.close()
            self._finished = True
        return self.path

    def close(self) -> None:
        """:meth:`finish` and move the file into place."""
        self.finish()
        self._stack.close()

    def abort(self) -> None:
        """Close the writer and remove the temporary file (after an error elsewhere)."""
        try:
            self._writer.close()
        finally:
            self._stack.__exit__(*_exc_info())


def _exc_info() -> tuple[type[BaseException], BaseException, None]:
    """An exception triple that makes :func:`atomic_path` remove its temporary file."""
    err = RuntimeError("Parquet write aborted")
    return RuntimeError, err, None


def read_parquet(path: str | os.PathLike[str]) -> pa.Table:
    """Read a Parquet file, with a clear error when it is missing or not Parquet."""
    p = _existing(path)
    try:
        return pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(p, exc) from exc


def open_parquet(path: str | os.PathLike[str]) -> pq.ParquetFile:
    """Open a Parquet file to read it row group by row group, with :func:`read_parquet`'s
    errors."""
    p = _existing(path)
    try:
        return pq.ParquetFile(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(p, exc) from exc


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise MissingInputError(f"{p}: file not found; run the stage that writes it (dvc repro).")
    return p


def _unreadable(p: Path, exc: Exception) -> InputFileError:
    return InputFileError(
        f"{p}: not a readable Parquet file ({exc}); re-create it or fetch it with dvc pull."
    )


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
