"""Stream decoded alert batches to disk and write the final tables with bounded memory.

A night holds 10^5–10^6 alerts; holding their rows as Python objects takes gigabytes. Each
decoded batch (an :class:`~astropipe.ztf.collector.AlertCollector`) is instead written at once
to a temporary Parquet file — its alert rows with the batch's own column types, and its
light-curve rows — and only a few numbers per alert stay in memory (``candid``, ``jd``, schema
rank, packet SHA-256, where the row lies: about 70 bytes).

When every packet is read:

- the ``candid`` winners are chosen by the same rule as
  :meth:`~astropipe.ztf.collector.AlertCollector.winners` (newest schema, then smallest SHA-256,
  then the first seen), from the in-memory keys;
- ``alerts.parquet`` is written in row groups of :data:`ALERT_GROUP_ROWS` rows in ``(jd, candid)``
  order: each spilled batch is read once, its rows cast to the night's final column types
  (widened, or text, as the collector does) and routed to the files of their output group,
  then each group is read back and sorted;
- the winners' light-curve rows are routed to buckets by ``object_id`` prefix (consecutive
  prefixes merged up to :data:`BUCKET_ROWS` rows); each bucket, with the DR rows of the same
  prefixes, is deduplicated and sorted by :func:`astropipe.lightcurve.to_lightcurve_table` on its
  own. The light-curve key starts with ``object_id``, so no duplicate spans two buckets and
  the buckets in prefix order are the sorted table.

Both tables are written by :class:`astropipe.io.tables.ParquetRowGroups`: row groups hold a
fixed number of rows, each made contiguous before it is written, whatever the batch size or the
bucket boundaries, so the bytes depend only on the data; a table smaller than one row group is
byte-identical to :func:`astropipe.io.tables.write_parquet` of the whole table in one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from astropipe.io.memory import release_free_heap
from astropipe.io.tables import ParquetRowGroups
from astropipe.lightcurve import LIGHTCURVE_SCHEMA, to_lightcurve_table
from astropipe.ztf.collector import _CORE, _CORE_NAMES, _WIDER, AlertCollector, AlertMeta, _column
from astropipe.ztf.collector import _version_key as version_key

__all__ = ["AlertSpill", "ROW_GROUP_ROWS", "ALERT_GROUP_ROWS", "BUCKET_ROWS", "PREFIX_CHARS"]

#: Rows per row group of ``lightcurves.parquet`` (14 columns: ~15 MB in memory).
ROW_GROUP_ROWS = 1 << 17
#: Rows per row group of ``alerts.parquet`` (over 100 columns: ~20 MB in memory).
ALERT_GROUP_ROWS = 1 << 14
#: Light-curve rows per bucket (consecutive object_id prefixes are merged up to this); a
#: bucket is deduplicated in pandas, about 1 kB per row at its peak.
BUCKET_ROWS = 1 << 17
#: Light-curve rows routed in memory before they are written to the bucket files (~30 MB).
ROUTE_ROWS = 1 << 18
#: Characters of ``object_id`` that choose a bucket (``ZTF18abcde``: ZTF names are given in
#: sequence within a year, so a night's objects share their first letters; ten characters
#: split them into groups of at most 26^2 names, whose rows bound a bucket's size).
PREFIX_CHARS = 10

_TEXT = (str, type(None))

_LC_TYPES = {
    "object_id": pa.string(),
    "band": pa.string(),
    "is_upper_limit": pa.bool_(),
    "flags": pa.int64(),
}


@dataclass
class AlertSpill:
    """Receives decoded batches in input order; writes the final tables at the end.

    Parameters
    ----------
    workdir
        Empty scratch directory (removed by the caller).
    """

    workdir: Path
    types: dict[str, pa.DataType] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    lc_skipped_no_object: int = 0
    jpeg_skipped: int = 0
    _keys: list[dict[str, np.ndarray]] = field(default_factory=list)
    _prefix_rows: dict[str, int] = field(default_factory=dict)
    _batches: int = 0
    _winners: np.ndarray | None = None

    # ------------------------------------------------------------------ pass 1
    def add(self, col: AlertCollector) -> None:
        """Spill one batch's rows (collected in input order after the previous batches)."""
        for name, tp in col.types.items():
            _merge_type(self.types, name, tp)
        for v, n in col.versions.items():
            self.versions[v] = self.versions.get(v, 0) + n
        self.lc_skipped_no_object += col.lc_skipped_no_object
        self.jpeg_skipped += col.jpeg_skipped
        n = len(col.alert_rows)
        if n == 0:
            return
        k = self._batches
        self._batches += 1
        table = _batch_alerts(col)
        extra = {
            "_sha256": pa.array([m.sha256 for m in col.meta], pa.string()),
            "_stamps": pa.array([list(m.stamps) for m in col.meta], pa.list_(pa.string())),
        }
        for name, arr in extra.items():
            table = table.append_column(name, arr)
        pq.write_table(table, self.workdir / f"a{k:07d}.parquet", compression="lz4")
        lc_rows = np.array([m.lc_rows for m in col.meta], dtype=np.int64)
        lc = {c: pa.array(v, _LC_TYPES.get(c, pa.float64())) for c, v in col.lc.items()}
        lc["_row"] = pa.array(np.repeat(np.arange(n, dtype=np.int32), lc_rows))
        pq.write_table(pa.table(lc), self.workdir / f"l{k:07d}.parquet", compression="lz4")
        for obj in col.lc["object_id"]:
            p = obj[:PREFIX_CHARS]
            self._prefix_rows[p] = self._prefix_rows.get(p, 0) + 1
        self._keys.append(
            {
                "candid": table["candid"].to_numpy(zero_copy_only=False).astype(np.int64),
                "jd": table["jd"].to_numpy(zero_copy_only=False).astype(np.float64),
                "version": np.array([r["schemavsn"] for r in col.alert_rows], dtype=object),
                "sha": np.array([bytes.fromhex(m.sha256) for m in col.meta], dtype="S32"),
                "batch": np.full(n, k, dtype=np.int32),
                "row": np.arange(n, dtype=np.int32),
                "stamps": np.array([len(m.stamps) for m in col.meta], dtype=np.int8),
            }
        )

    # ------------------------------------------------------------------ pass 2
    def _key(self, name: str) -> np.ndarray:
        parts = [k[name] for k in self._keys]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _finish_keys(self) -> None:
        if self._winners is not None:
            return
        versions = self._key("version")
        ranks = {v: version_key(v) for v in set(versions.tolist())}
        order = sorted(set(ranks.values()))
        rank = np.array([order.index(ranks[v]) for v in versions.tolist()], dtype=np.int32)
        for part in self._keys:  # the text is no longer needed
            part.pop("version")
        self._rank = rank
        candid = self._key("candid")
        seq = np.arange(len(candid))
        # per candid: newest schema, then smallest SHA-256, then first seen
        o = np.lexsort((seq, self._key("sha"), -rank, candid))
        first = np.ones(len(o), dtype=bool)
        first[1:] = candid[o][1:] != candid[o][:-1]
        self._winners = np.sort(o[first])
        counts = np.unique(candid, return_counts=True)
        self._dup_candids = counts[0][counts[1] > 1]

    @property
    def alerts(self) -> int:
        """Number of alerts decoded (before deduplication)."""
        return sum(len(k["candid"]) for k in self._keys)

    @property
    def winners(self) -> np.ndarray:
        """Global row numbers (input order) of the rows kept, ascending."""
        self._finish_keys()
        assert self._winners is not None
        return self._winners

    def stamps_kept(self) -> int:
        """Stamps of the winning packets."""
        return int(self._key("stamps")[self.winners].astype(np.int64).sum())

    def _rows(self, seqs: np.ndarray, columns: list[str]) -> list[dict[str, Any]]:
        """Columns of the rows ``seqs`` (global row numbers), each spill file read once."""
        batch, row = self._key("batch")[seqs], self._key("row")[seqs]
        out: list[dict[str, Any]] = [{} for _ in range(len(seqs))]
        for b in np.unique(batch).tolist():
            sel = np.flatnonzero(batch == b)
            t = pq.read_table(self.workdir / f"a{b:07d}.parquet", columns=columns)
            for i, values in zip(sel.tolist(), t.take(pa.array(row[sel])).to_pylist(), strict=True):
                out[i] = values
        return out

    def _group_rows(
        self, groups: list[tuple[Any, int, list[int]]], columns: list[str]
    ) -> list[list[dict[str, Any]]]:
        flat = [i for _, _, idx in groups for i in idx]
        rows = iter(self._rows(np.array(flat, dtype=np.int64), columns))
        return [[next(rows) for _ in idx] for _, _, idx in groups]

    def duplicate_groups(self) -> list[tuple[Any, int, list[int]]]:
        """``(candid, winner, [rows in input order])`` of every duplicated ``candid``."""
        self._finish_keys()
        if not len(self._dup_candids):
            return []
        candid = self._key("candid")
        win = set(self.winners.tolist())
        groups: dict[int, list[int]] = {}
        for i in np.flatnonzero(np.isin(candid, self._dup_candids)).tolist():
            groups.setdefault(int(candid[i]), []).append(i)
        return [(c, next(i for i in idx if i in win), idx) for c, idx in sorted(groups.items())]

    def duplicates(self) -> list[dict[str, Any]]:
        """As :meth:`AlertCollector.duplicates`."""
        out = []
        groups = self.duplicate_groups()
        for (candid, win, idx), rows in zip(
            groups, self._group_rows(groups, ["packet", "_sha256"]), strict=True
        ):
            kept = rows[idx.index(win)]["packet"]
            out.append(
                {
                    "candid": candid,
                    "kept": kept,
                    "dropped": [r["packet"] for i, r in zip(idx, rows, strict=True) if i != win],
                    "same_content": len({r["_sha256"] for r in rows}) == 1,
                }
            )
        return out

    def duplicate_metas(self) -> list[tuple[AlertMeta, list[AlertMeta]]]:
        """``(winner, every packet)`` metadata of each duplicated ``candid`` (stamp cleanup)."""
        out = []
        groups = self.duplicate_groups()
        for (_, win, idx), rows in zip(
            groups, self._group_rows(groups, ["_sha256", "_stamps"]), strict=True
        ):
            metas = [AlertMeta(r["_sha256"], 0, tuple(r["_stamps"] or ())) for r in rows]
            out.append((metas[idx.index(win)], metas))
        return out

    def alert_fields(self) -> list[pa.Field]:
        """The alerts table's columns: core first, then every candidate field sorted."""
        extra = sorted(set(self.types) - _CORE_NAMES)
        return [pa.field(n, t) for n, t in _CORE] + [pa.field(n, self.types[n]) for n in extra]

    def write_alerts(self, path: Path, meta: Mapping[bytes, bytes]) -> int:
        """Write the deduplicated alerts in ``(jd, candid)`` order; return the row count."""
        win = self.winners
        order = win[np.lexsort((self._key("candid")[win], self._key("jd")[win]))]
        schema = pa.schema(self.alert_fields())
        groups = self._route_alerts(order, schema)
        with ParquetRowGroups(path, schema, meta, rows=ALERT_GROUP_ROWS) as out:
            for files in groups:
                t = pa.concat_tables([pq.read_table(f) for f in files])
                ranks = np.argsort(t["_pos"].to_numpy())
                out.write(t.take(pa.array(ranks)).drop_columns(["_pos"]))
                del t
                release_free_heap(arrow=True)
        return out.num_rows

    def _route_alerts(self, order: np.ndarray, schema: pa.Schema) -> list[list[Path]]:
        """The rows ``order`` (global row numbers, in output order) split by output group.

        Group ``g`` holds output rows ``g × ALERT_GROUP_ROWS`` onwards; each spilled batch is
        read once and its kept rows, cast to ``schema`` and tagged with their output position
        (``_pos``), go to their groups' files, gathered in memory up to
        :data:`ALERT_GROUP_ROWS` rows at a time. Reading every batch once per group instead
        costs groups × batches reads when the input is not in ``jd`` order.
        """
        pos = np.full(self.alerts, -1, dtype=np.int64)
        pos[order] = np.arange(len(order))
        files: list[list[Path]] = [[] for _ in range(-(-len(order) // ALERT_GROUP_ROWS))]
        route_dir = self.workdir / "alert_groups"
        route_dir.mkdir()
        pending: dict[int, list[pa.Table]] = {}
        pending_rows = 0

        def flush() -> None:
            for g, parts in pending.items():
                target = route_dir / f"{g:06d}.{len(files[g]):06d}.parquet"
                pq.write_table(pa.concat_tables(parts), target, compression="lz4")
                files[g].append(target)
            pending.clear()

        offset = 0
        for k in range(self._batches):
            t = pq.read_table(self.workdir / f"a{k:07d}.parquet")
            p = pos[offset : offset + t.num_rows]
            offset += t.num_rows
            kept = np.flatnonzero(p >= 0)
            if not len(kept):
                continue
            t = _cast(t.take(pa.array(kept)), schema).append_column("_pos", pa.array(p[kept]))
            group = p[kept] // ALERT_GROUP_ROWS
            for g in np.unique(group).tolist():
                pending.setdefault(g, []).append(t.filter(pa.array(group == g)))
            pending_rows += t.num_rows
            if pending_rows >= ALERT_GROUP_ROWS:
                flush()
                pending_rows = 0
        flush()
        return files

    def _route_lightcurves(self, bounds: np.ndarray) -> dict[int, list[Path]]:
        """The winners' light-curve rows split into bucket files; bucket → its files in order.

        Rows are gathered in memory up to :data:`ROUTE_ROWS` and then written, one file per
        bucket that received rows, and closed: no file (nor its footer) stays open, whatever
        the number of buckets and batches (a night's objects are spread over every bucket, so
        each batch touches them all).
        """
        bucket_dir = self.workdir / "buckets"
        bucket_dir.mkdir()
        files: dict[int, list[Path]] = {}
        pending: dict[int, list[pa.Table]] = {}
        pending_rows = 0

        def flush() -> None:
            for b, parts in pending.items():
                path = bucket_dir / f"{b:06d}.{len(files.get(b, ())):06d}.parquet"
                pq.write_table(pa.concat_tables(parts), path, compression="lz4")
                files.setdefault(b, []).append(path)
            pending.clear()

        keep = np.zeros(self.alerts, dtype=bool)
        keep[self.winners] = True
        offset = 0
        for k in range(self._batches):
            t = pq.read_table(self.workdir / f"l{k:07d}.parquet")
            n_alerts = pq.read_metadata(self.workdir / f"a{k:07d}.parquet").num_rows
            rows = t["_row"].to_numpy()
            t = t.drop_columns(["_row"]).filter(pa.array(keep[offset + rows]))
            offset += n_alerts
            prefix = np.array([o[:PREFIX_CHARS] for o in t["object_id"].to_pylist()], object)
            which = np.searchsorted(bounds, prefix, side="right") if len(prefix) else prefix
            for b in np.unique(which).tolist():
                pending.setdefault(b, []).append(t.filter(pa.array(which == b)))
            pending_rows += t.num_rows
            if pending_rows >= ROUTE_ROWS:
                flush()
                pending_rows = 0
        flush()
        return files

    def write_lightcurves(
        self,
        path: Path,
        meta: Mapping[bytes, bytes],
        *,
        alert_frame: Callable[[pd.DataFrame], pd.DataFrame],
        dr_frame: pd.DataFrame,
    ) -> dict[str, Any]:
        """Write the light curves bucket by bucket; return their counts for the summary.

        ``alert_frame`` turns a bucket's alert rows (the collector's light-curve columns) into
        the frame that is concatenated with the DR rows (survey/source, DC magnitudes).
        """
        dr_prefix = (
            dr_frame["object_id"].astype(str).str[:PREFIX_CHARS]
            if len(dr_frame)
            else pd.Series([], dtype=object)
        )
        counts = dict(self._prefix_rows)
        for p, n in dr_prefix.value_counts().items():
            counts[p] = counts.get(p, 0) + int(n)
        bounds = _bucket_bounds(counts)
        buckets = self._route_lightcurves(bounds)
        dr_which = (
            np.searchsorted(bounds, dr_prefix.to_numpy(dtype=object), side="right")
            if len(dr_frame)
            else np.zeros(0, dtype=np.int64)
        )
        summary = {"rows": 0, "upper_limits": 0, "objects": 0, "by_source": {}}
        with ParquetRowGroups(path, LIGHTCURVE_SCHEMA, meta, rows=ROW_GROUP_ROWS) as out:
            for b in range(len(bounds) + 1):
                frames = []
                if b in buckets:
                    part = pa.concat_tables([pq.read_table(f) for f in buckets[b]]).to_pandas()
                    frames.append(alert_frame(part))
                if len(dr_frame):
                    part = dr_frame[dr_which == b]
                    if len(part):
                        frames.append(part)
                frames = [f for f in frames if len(f)]
                if not frames:
                    continue
                table = to_lightcurve_table(pd.concat(frames, ignore_index=True))
                out.write(table)
                _count(summary, table)
                del frames, table
                # pandas' freed blocks, so the next bucket reuses the same pages (without it,
                # peak RSS crept up bucket after bucket: 421 → 382 MB at 20k alerts)
                release_free_heap(arrow=True)
        summary["by_source"] = dict(sorted(summary["by_source"].items()))
        return summary


def _count(summary: dict[str, Any], table: pa.Table) -> None:
    summary["rows"] += table.num_rows
    summary["upper_limits"] += int(np.count_nonzero(table["is_upper_limit"].to_numpy()))
    summary["objects"] += len(table["object_id"].unique())  # buckets share no object_id
    src = summary["by_source"]
    for s, n in pd.Series(table["source"].to_pylist()).value_counts().items():
        src[s] = src.get(s, 0) + int(n)


def _bucket_bounds(counts: Mapping[str, int]) -> np.ndarray:
    """Prefixes that start a new bucket (after the first): consecutive prefixes, ≤ BUCKET_ROWS."""
    bounds: list[str] = []
    rows = 0
    for p in sorted(counts):
        if rows and rows + counts[p] > BUCKET_ROWS:
            bounds.append(p)
            rows = 0
        rows += counts[p]
    return np.array(bounds, dtype=object)


def _merge_type(types: dict[str, pa.DataType], name: str, tp: pa.DataType) -> None:
    old = types.get(name)
    if old is None or old == tp:
        types[name] = tp
    else:  # as AlertCollector._merge_type
        types[name] = _WIDER.get((old, tp)) or _WIDER.get((tp, old)) or pa.string()


def _batch_alerts(col: AlertCollector) -> pa.Table:
    """Every alert row of one batch (not deduplicated), with the batch's own column types."""
    extra = sorted(set(col.types) - _CORE_NAMES)
    fields = [pa.field(n, t) for n, t in _CORE] + [pa.field(n, col.types[n]) for n in extra]
    schema = pa.schema(fields)
    text = [f.name for f in fields if pa.types.is_string(f.type)]
    rows = col.alert_rows
    if all(type(r.get(n)) in _TEXT for r in rows for n in text):
        # the common case, converted row-wise in C++ (3x faster; same arrays)
        return pa.Table.from_pylist(rows, schema=schema)
    # a text column holding other types (schemas disagreed): str() them as the collector does
    arrays = [pa.array(_column(rows, f), type=f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in the final ``schema``: same, widened, or as text like the collector."""
    arrays = []
    for f in schema:
        if f.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table[f.name]
        if col.type == f.type:
            arrays.append(col)
        elif pa.types.is_string(f.type):
            rows = [{f.name: v} for v in col.to_pylist()]
            arrays.append(pa.array(_column(rows, f), type=f.type))
        else:  # int32 → int64, float32 → float64: exact
            arrays.append(col.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=schema)
