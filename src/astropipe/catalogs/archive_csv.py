"""Read a NASA Exoplanet Archive CSV into a typed Arrow table, by the format's rules.

The archive's CSV downloads (and the sample snapshots) start with a block of ``#`` comment
lines: a banner, then one ``# COLUMN name: description [unit]`` line per column. Its TAP
service's ``format=csv`` answer has no comment block. Both are read here:

- leading ``#`` lines are the comment block; the first other line is the header;
- an empty field is null (the archive writes nothing for a missing value);
- every declared column (:mod:`astropipe.catalogs.schemas`) is read as text, then cast to its
  declared type, so one bad value costs its row, not the file. Such rows, rows with the wrong
  number of fields and rows without an id are *quarantined*: listed with the reason and left
  out; ``fail=True`` raises on the first instead;
- a column the schema does not declare is dropped and named; a declared column missing from
  the header is an error (the table's schema is fixed);
- rows repeated exactly are kept once (counted); different rows under one id are all
  quarantined, since nothing says which is right;
- rows are sorted by id in natural order (``TOI 216.01`` before ``TOI 1000.01``), so the same
  rows in any order give the same table.

Descriptions and units from the comment block become Arrow field metadata (``description``,
``unit`` in astropy syntax, ``archive_unit`` as written); without a comment block they come
from the declared schema.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from astropipe.catalogs.schemas import CatalogSpec
from astropipe.errors import InputFileError

__all__ = ["ParsedCatalog", "parse_column_notes", "parse_archive_csv", "natural_key"]

log = logging.getLogger(__name__)

_COLUMN_NOTE = re.compile(r"^#\s*COLUMN\s+(\w+)\s*:\s*(.*?)\s*(?:\[(.*)\])?\s*$")
_DIGITS = re.compile(r"(\d+)")
_EPIC = re.compile(r"^\s*EPIC\s*(\d+)\s*$", re.I)


@dataclass
class ParsedCatalog:
    """A catalog read from one CSV.

    Attributes
    ----------
    table
        The typed table, sorted by id, with field metadata.
    notes
        Column name → (description, archive unit) from the comment block ({} without one).
    quarantined
        ``{"line" or "id", "reason"}`` per row left out.
    duplicates_dropped
        Exact repeats of a row that were kept once.
    undeclared_columns
        Header columns the schema does not declare (dropped).
    rows_read
        Data rows in the file (before anything was left out).
    """

    table: pa.Table
    notes: dict[str, tuple[str, str]] = field(default_factory=dict)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    duplicates_dropped: int = 0
    undeclared_columns: list[str] = field(default_factory=list)
    rows_read: int = 0


def parse_column_notes(comments: list[str]) -> dict[str, tuple[str, str]]:
    """``# COLUMN name: description [unit]`` lines → name → (description, unit as written)."""
    notes = {}
    for line in comments:
        m = _COLUMN_NOTE.match(line)
        if m:
            notes[m.group(1)] = (m.group(2), (m.group(3) or "").strip())
    return notes


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key comparing digit runs as numbers: ``216.01`` < ``1000.01``, ``K00752.01``."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(text)
    )


def _split(text: str) -> tuple[list[str], str, int]:
    """Leading ``#`` lines, the rest, and the number of lines before the header."""
    comments: list[str] = []
    pos = 0
    while pos < len(text) and text.startswith("#", pos):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end + 1
        comments.append(text[pos:end].rstrip("\r\n"))
        pos = end
    return comments, text[pos:], len(comments)


def _fail(where: str, problem: str, fix: str) -> InputFileError:
    return InputFileError(f"{where}: {problem}; {fix}")


def parse_archive_csv(
    data: bytes | str,
    spec: CatalogSpec,
    *,
    where: str,
    fail: bool = False,
) -> ParsedCatalog:
    """Parse an Exoplanet Archive CSV (with or without its comment block) into ``spec``'s schema.

    Parameters
    ----------
    data
        The CSV (file content or a TAP answer body).
    spec
        The catalog's declared columns.
    where
        Shown in messages: the file path or the request URL.
    fail
        Raise on the first bad row instead of quarantining it.

    Returns
    -------
    ParsedCatalog

    Raises
    ------
    InputFileError
        Not UTF-8, no header, a declared column missing, a repeated header name, the text cut
        off mid-line (a truncated download), no data rows, or (with ``fail``) a bad row.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(
                where, f"not UTF-8 text (byte {exc.start})", "re-download it from the archive"
            ) from None
    else:
        text = data
    comments, body, before = _split(text)
    notes = parse_column_notes(comments)
    if not body.strip():
        raise _fail(where, "no header line after the comment block", "re-download it")
    if not body.endswith("\n"):
        # The archive ends every row with a newline: a last line without one was cut off.
        tail = body.rstrip("\n").rsplit("\n", 1)[-1]
        raise _fail(
            where,
            f"ends mid-line (last line {tail[:60]!r} has no newline): the file or answer was "
            "truncated",
            "re-download it",
        )
    header_line = body.split("\n", 1)[0].rstrip("\r")
    header_names = [n.strip() for n in next(csv.reader([header_line]))]
    repeated = sorted({n for n in header_names if header_names.count(n) > 1})
    if repeated:
        raise _fail(where, f"header names {repeated} more than once", "check the query")
    wanted = spec.read_names
    missing = [n for n in wanted if n not in header_names]
    if missing:
        raise _fail(
            where,
            f"the {spec.name} table lacks declared column(s) {missing} (header has "
            f"{len(header_names)} columns)",
            f"select them in catalogs.tap.queries.{spec.name}, or use the archive's "
            f"{spec.tap_table} table",
        )
    undeclared = [n for n in header_names if n not in wanted]

    bad_rows: list[dict[str, Any]] = []

    def on_invalid(row: Any) -> str:
        line = before + row.number if row.number is not None else None
        reason = (
            f"expected {row.expected_columns} fields, found {row.actual_columns}"
            f" ({row.text[:60]!r})"
        )
        if fail:
            return "error"
        bad_rows.append({"line": line, "reason": reason})
        return "skip"

    try:
        raw = pacsv.read_csv(
            io.BytesIO(body.encode("utf-8")),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in header_names},
                include_columns=wanted,
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        detail = " ".join(str(exc).split())[:160]
        raise _fail(where, f"not a readable CSV table ({detail})", "re-download it") from None
    rows_read = raw.num_rows + len(bad_rows)
    if bad_rows:
        log.warning("%s: %d row(s) with the wrong number of fields left out", where, len(bad_rows))
    table, quarantined = _typed(raw, spec, where=where, fail=fail, first_line=before + 2)
    quarantined = bad_rows + quarantined
    if table.num_rows == 0:
        raise _fail(
            where,
            f"no usable {spec.name} rows ({rows_read} read, {len(quarantined)} quarantined)",
            "check the file or the query",
        )
    table, dropped, conflicts = _deduplicate(table, spec, where=where, fail=fail)
    quarantined += conflicts
    ids = table[spec.id_column].to_pylist()
    order = sorted(range(table.num_rows), key=lambda i: natural_key(ids[i]))
    table = table.take(pa.array(order, pa.int64()))
    table = _with_metadata(table, spec, notes)
    return ParsedCatalog(
        table=table,
        notes=notes,
        quarantined=quarantined,
        duplicates_dropped=dropped,
        undeclared_columns=undeclared,
        rows_read=rows_read,
    )


def _cast(values: pa.ChunkedArray, column: Any) -> tuple[pa.Array, dict[int, str]]:
    """Cast a text column to its declared type; return it and row → reason for bad values."""
    arr = values.combine_chunks()
    if column.type == pa.string():
        return arr, {}
    bad: dict[int, str] = {}
    try:
        out = pc.cast(arr, column.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Rare path: find the offending values one by one, null them, cast the rest.
        good = []
        for i, v in enumerate(arr.to_pylist()):
            try:
                pc.cast(pa.array([v], pa.string()), column.type)
                good.append(v)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad[i] = f"{column.name}={v!r} is not {_kind(column.type)}"
                good.append(None)
        out = pc.cast(pa.array(good, pa.string()), column.type)
    if pa.types.is_floating(column.type):
        # The archive writes no NaN/inf (a missing value is an empty field): such text is bad.
        finite = pc.is_finite(out)
        for i in pc.indices_nonzero(pc.invert(pc.fill_null(finite, True))).to_pylist():
            bad.setdefault(i, f"{column.name}={arr[i].as_py()!r} is not a finite number")
    return out, bad


def _kind(t: pa.DataType) -> str:
    return "an integer" if pa.types.is_integer(t) else "a number"


def _typed(
    raw: pa.Table, spec: CatalogSpec, *, where: str, fail: bool, first_line: int
) -> tuple[pa.Table, list[dict[str, Any]]]:
    columns: dict[str, pa.Array] = {}
    bad: dict[int, list[str]] = {}
    for column in spec.columns:
        if spec.target_source and column.name == spec.target_column:
            continue
        arr, problems = _cast(raw[column.name], column)
        columns[column.name] = arr
        for i, reason in problems.items():
            bad.setdefault(i, []).append(reason)
    if spec.target_source:
        source = columns[spec.target_source].to_pylist()
        numbers = []
        for i, v in enumerate(source):
            m = _EPIC.match(v) if v is not None else None
            numbers.append(int(m.group(1)) if m else None)
            if v is not None and m is None:
                bad.setdefault(i, []).append(
                    f"{spec.target_source}={v!r} is not '{spec.id_kind} <number>'"
                )
        columns[spec.target_column] = pa.array(numbers, pa.int64())
    for name in (spec.id_column, spec.target_source or spec.target_column):
        # an empty field; a value that did not parse already has its reason
        for i in pc.indices_nonzero(pc.is_null(raw[name])).to_pylist():
            bad.setdefault(i, []).append(f"no {name}")
    ids = columns[spec.id_column].to_pylist()
    quarantined = []
    for i in sorted(bad):
        record = {
            "row": i + 1,
            "id": ids[i],
            "reason": "; ".join(bad[i]),
        }
        if fail:
            raise InputFileError(
                f"{where}: data row {i + 1} (line {first_line + i} if no row was skipped before "
                f"it, {spec.id_column}={ids[i]!r}): {record['reason']}; fix the file, or set "
                "catalogs.on_error=quarantine to leave such rows out."
            )
        quarantined.append(record)
    if quarantined:
        log.warning("%s: %d row(s) with unusable values left out", where, len(quarantined))
    table = pa.table([columns[c.name] for c in spec.columns], schema=spec.schema())
    if bad:
        keep = [i for i in range(table.num_rows) if i not in bad]
        table = table.take(pa.array(keep, pa.int64()))
    return table, quarantined


def _deduplicate(
    table: pa.Table, spec: CatalogSpec, *, where: str, fail: bool
) -> tuple[pa.Table, int, list[dict[str, Any]]]:
    """Keep exact repeats once; quarantine every row of an id that names different rows."""
    ids = table[spec.id_column].to_pylist()
    seen: dict[str, list[int]] = {}
    for i, v in enumerate(ids):
        seen.setdefault(v, []).append(i)
    repeated = {k: v for k, v in seen.items() if len(v) > 1}
    if not repeated:
        return table, 0, []
    rows = table.to_pylist()
    drop: set[int] = set()
    quarantined = []
    dropped = 0
    for key, idx in sorted(repeated.items(), key=lambda kv: natural_key(kv[0])):
        distinct = {_row_key(rows[i]) for i in idx}
        if len(distinct) == 1:
            drop.update(idx[1:])
            dropped += len(idx) - 1
            continue
        if fail:
            raise InputFileError(
                f"{where}: {spec.id_column}={key!r} names {len(idx)} different rows; fix the "
                "file or the query (one row per entry), or set catalogs.on_error=quarantine."
            )
        drop.update(idx)
        quarantined.append(
            {
                "id": key,
                "reason": f"{spec.id_column}={key!r} names {len(idx)} different rows; all left out",
            }
        )
    if dropped:
        log.info("%s: %d exact repeated row(s) kept once", where, dropped)
    keep = [i for i in range(table.num_rows) if i not in drop]
    return table.take(pa.array(keep, pa.int64())), dropped, quarantined


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    # NaN never occurs (refused above), so plain equality of the values is exact.
    return tuple((k, None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items())


def _with_metadata(
    table: pa.Table, spec: CatalogSpec, notes: dict[str, tuple[str, str]]
) -> pa.Table:
    """Attach description and units to every field: the file's own notes first."""
    fields = []
    for column in spec.columns:
        description, archive_unit = notes.get(
            column.name, (column.description, column.archive_unit)
        )
        meta = {"description": description, "archive_unit": archive_unit, "unit": column.unit}
        fields.append(
            pa.field(column.name, column.type).with_metadata(
                {k.encode(): v.encode() for k, v in meta.items()}
            )
        )
    return table.cast(pa.schema(fields))
