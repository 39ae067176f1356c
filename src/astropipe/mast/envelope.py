"""MAST Portal answers: the ``invoke`` envelope and its typed ``fields`` → a pyarrow table.

Every ``invoke`` answer is one JSON object, the same for every service (see
https://mast.stsci.edu/api/v0/ and the recorded answers in ``data/sample/mast/``)::

    {"status": "COMPLETE" | "EXECUTING" | "ERROR",
     "msg": "",
     "fields": [{"name": "obs_id", "type": "string"}, ...],
     "data": [{"obs_id": "...", ...}, ...],
     "paging": {"page": 1, "pageSize": 50000, "rows": 3, "rowsTotal": 3, ...}}

:func:`parse_envelope` checks it and :func:`rows_to_table` turns ``data`` into Arrow columns
whose types are the ones ``fields`` declares (:data:`FIELD_TYPES`). The sample run and the live
client both go through these two functions, so the sample exercises the live code path.

The real answers have quirks, handled here on purpose and pinned by tests:

- ids declared ``string`` arrive as JSON integers (``obsid``, ``objID``, ``obsID``): they are
  written as their decimal text, so the column keeps its declared type;
- ``float`` columns carry JSON integers (``t_exptime: 184``): converted exactly;
- ``boolean`` columns are often all ``null`` (``_selected_``): kept as nulls.

Anything else that does not fit its declared type raises
:class:`~astropipe.errors.ServiceResponseError` naming the answer, the field, the row and the
value; nothing is guessed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from astropipe.errors import ServiceResponseError
from astropipe.sources.responses import looks_like_html

__all__ = [
    "FIELD_TYPES",
    "STATUSES",
    "MastPage",
    "parse_envelope",
    "fields_schema",
    "rows_to_table",
    "concat_tables",
]

#: MAST field type → Arrow type. The names MAST uses (``string``, ``float``, ``int``,
#: ``boolean``, ``date``) and the database spellings astroquery's ``parse_type`` also accepts.
FIELD_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "char": pa.string(),
    "float": pa.float64(),
    "double": pa.float64(),
    "decimal": pa.float64(),
    "int": pa.int64(),
    "short": pa.int64(),
    "long": pa.int64(),
    "boolean": pa.bool_(),
    "date": pa.timestamp("ms"),
    "datetime": pa.timestamp("ms"),
}

#: ``status`` values of the envelope.
STATUSES = ("COMPLETE", "EXECUTING", "ERROR")

#: Schema-metadata key of each column: the MAST type it was declared with.
_TYPE_KEY = b"mast_type"


@dataclass(frozen=True)
class MastPage:
    """One checked ``invoke`` answer.

    Attributes
    ----------
    status
        ``COMPLETE`` or ``EXECUTING`` (``ERROR`` raises instead).
    fields
        ``[(name, mast_type), ...]`` in the answer's order (empty while EXECUTING).
    rows
        The ``data`` rows (dicts), untouched.
    paging
        The ``paging`` object (``{}`` when the answer has none).
    """

    status: str
    fields: tuple[tuple[str, str], ...] = ()
    rows: tuple[Mapping[str, Any], ...] = ()
    paging: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rows_total(self) -> int:
        """``paging.rowsTotal``, or the rows of this page when the answer has no paging."""
        total = self.paging.get("rowsTotal", len(self.rows))
        return int(total)


def _bad(where: str, what: str) -> ServiceResponseError:
    return ServiceResponseError(
        f"{where}: {what}; the answer is not a MAST invoke result; retry later, or check the "
        "service name and params."
    )


def parse_envelope(content: bytes, *, where: str) -> MastPage:
    """Check an ``invoke`` answer and return it as a :class:`MastPage`.

    Parameters
    ----------
    content
        The raw body (a recorded file or an HTTP answer).
    where
        What the answer is (service and page, or the sample file), for messages.

    Raises
    ------
    ServiceResponseError
        HTML or other non-JSON text, a JSON value without ``status``, ``status: ERROR`` (its
        ``msg`` is quoted), an unknown status, or ``fields``/``data``/``paging`` of the wrong
        shape.
    """
    if looks_like_html(content[:512]):
        raise ServiceResponseError(
            f"{where}: expected JSON, got an HTML page; MAST answered with an error or "
            "maintenance page; retry later (https://mast.stsci.edu shows the service status)."
        )
    try:
        doc = json.loads(content)
    except (UnicodeDecodeError, ValueError):
        head = content[:40].decode("utf-8", errors="replace")
        raise ServiceResponseError(
            f"{where}: expected JSON, got {len(content)} bytes starting {head!r}; the answer is "
            "cut or not from MAST; retry later."
        ) from None
    if not isinstance(doc, Mapping) or "status" not in doc:
        raise _bad(where, f"a JSON {type(doc).__name__} without `status`")
    status = doc["status"]
    if status == "ERROR":
        msg = " ".join(str(doc.get("msg") or "no message").split())[:300]
        raise ServiceResponseError(
            f"{where}: MAST answered status ERROR: {msg!r}; check the request's filters and "
            "params against https://mast.stsci.edu/api/v0/_services.html."
        )
    if status not in STATUSES:
        raise _bad(where, f"unknown status {status!r} (expected one of {list(STATUSES)})")
    if status == "EXECUTING":
        return MastPage(status="EXECUTING")
    fields = doc.get("fields")
    rows = doc.get("data")
    paging = doc.get("paging") or {}
    if not isinstance(fields, list) or not all(
        isinstance(f, Mapping) and isinstance(f.get("name"), str) and isinstance(f.get("type"), str)
        for f in fields
    ):
        raise _bad(where, "`fields` is not a list of {name, type} objects")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise _bad(where, "`data` is not a list of row objects")
    if not isinstance(paging, Mapping):
        raise _bad(where, "`paging` is not an object")
    total = paging.get("rowsTotal", len(rows))
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise _bad(where, f"paging.rowsTotal is {total!r}, not a row count")
    names = [f["name"] for f in fields]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _bad(where, f"`fields` names {dupes} more than once")
    return MastPage(
        status="COMPLETE",
        fields=tuple((f["name"], f["type"].lower()) for f in fields),
        rows=tuple(rows),
        paging=dict(paging),
    )


def fields_schema(fields: Sequence[tuple[str, str]], *, where: str) -> pa.Schema:
    """The Arrow schema a ``fields`` list declares (each column remembers its MAST type)."""
    out = []
    for name, mast_type in fields:
        if mast_type not in FIELD_TYPES:
            raise ServiceResponseError(
                f"{where}: field {name!r} has type {mast_type!r}, which astropipe does not know "
                f"(known: {sorted(FIELD_TYPES)}); add it to FIELD_TYPES in "
                "src/astropipe/mast/envelope.py."
            )
        out.append(pa.field(name, FIELD_TYPES[mast_type], metadata={_TYPE_KEY: mast_type}))
    return pa.schema(out)


def _garbled(where: str, name: str, mast_type: str, row: int, value: Any) -> ServiceResponseError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ServiceResponseError(
        f"{where}: field {name!r} (declared {mast_type}) row {row}: {shown} is not a "
        f"{mast_type}; the answer is garbled; retry, or report it to archive@stsci.edu."
    )


def _string(v: Any) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, int):  # ids declared string, sent as numbers
        return str(v)
    if isinstance(v, float) and math.isfinite(v):
        return repr(v)
    raise TypeError


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        return float(v)  # "NaN", "1.5e3"; anything else raises ValueError
    raise TypeError


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("+-").isdigit():
        return int(v)
    raise TypeError


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise TypeError


def _date(v: Any) -> np.datetime64:
    if not isinstance(v, str):
        raise TypeError
    return np.datetime64(v.strip().replace(" ", "T", 1).rstrip("Z"), "ms")


_CONVERT = {
    pa.string(): _string,
    pa.float64(): _float,
    pa.int64(): _int,
    pa.bool_(): _bool,
    pa.timestamp("ms"): _date,
}


def rows_to_table(
    fields: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]], *, where: str
) -> pa.Table:
    """Build a table with the column types ``fields`` declares from the ``data`` rows.

    A missing key or ``null`` becomes a null. A row key that ``fields`` does not declare is
    refused (the answer is inconsistent).

    Raises
    ------
    ServiceResponseError
        Unknown field type, undeclared key, or a value that is not of its declared type.
    """
    schema = fields_schema(fields, where=where)
    declared = set(schema.names)
    for i, row in enumerate(rows):
        extra = set(row) - declared
        if extra:
            raise _bad(where, f"row {i} has keys {sorted(extra)} that `fields` does not declare")
    columns = []
    for f in schema:
        convert = _CONVERT[f.type]
        values: list[Any] = []
        for i, row in enumerate(rows):
            v = row.get(f.name)
            if v is None:
                values.append(None)
                continue
            try:
                values.append(convert(v))
            except (TypeError, ValueError, OverflowError):
                raise _garbled(where, f.name, f.metadata[_TYPE_KEY].decode(), i, v) from None
        columns.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def concat_tables(tables: Sequence[pa.Table], *, where: str) -> pa.Table:
    """Stack answers whose ``fields`` may differ: the union of columns, in first-seen order.

    A column missing from one answer is null in its rows. The same name declared with two
    different types is refused.
    """
    if not tables:
        return pa.table({})
    seen: dict[str, pa.Field] = {}
    for t in tables:
        for f in t.schema:
            if f.name in seen and seen[f.name].type != f.type:
                raise ServiceResponseError(
                    f"{where}: field {f.name!r} is {seen[f.name].type} in one answer and "
                    f"{f.type} in another; the answers do not belong together."
                )
            seen.setdefault(f.name, f)
    schema = pa.schema(list(seen.values()))
    aligned = []
    for t in tables:
        cols = [
            t.column(f.name) if f.name in t.column_names else pa.nulls(t.num_rows, type=f.type)
            for f in schema
        ]
        aligned.append(pa.Table.from_arrays(cols, schema=schema))
    return pa.concat_tables(aligned)
