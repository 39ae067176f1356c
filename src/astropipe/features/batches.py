"""Split the light-curve points into batches of whole objects, and clean + extract one batch.

Cleaning works per light curve ``(object_id, band, source)`` and the features per
``(object_id, band)``, so any split into whole objects gives, batch by batch, the rows of the
whole table. The split is deterministic: the distinct ``object_id`` values of every input,
sorted, cut into consecutive runs of at most ``features.batch_points`` input points (an
object with more points is a batch of its own). Batches in that order are the outputs' order.

Two passes over the inputs, each reading one Parquet record batch at a time:

1. :func:`plan` reads only the ``object_id`` column and counts the points of each object.
2. :func:`spill` routes every row to its batch's spill files (Arrow IPC streams, one per batch
   and input, in a temporary directory next to the outputs), keeping input order, so a
   batch's rows are its objects' rows in the order the whole table had them.

:func:`process_batch` (a module-level task for :mod:`astropipe.compute`) reads a batch's spill
files by absolute path, cleans and extracts, and returns everything as data (tables, counts,
plot candidates): a worker of a cluster has no way to log to the stage.
"""

from __future__ import annotations

import bisect
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from astropipe.errors import InputFileError
from astropipe.features.clean import clean_table
from astropipe.features.clean.masks import REMOVED
from astropipe.features.clean.pipeline import CLEAN_SCHEMA
from astropipe.features.clean.report import feature_plot_table
from astropipe.features.clean.summary import StepCounts, count_steps
from astropipe.features.extract import compute_features
from astropipe.features.output import FEATURES_SCHEMA, with_survey
from astropipe.io.tables import open_parquet

if TYPE_CHECKING:
    from astropipe.features.stage import FeaturesConfig

__all__ = [
    "Plan",
    "Batch",
    "BatchResult",
    "plan",
    "spill",
    "spill_dir_near",
    "process_batch",
    "READ_ROWS",
]

#: Rows per record batch read from an input (about 10 MB for the TESS table's 23 columns).
READ_ROWS = 1 << 16
#: Spill files open for writing at once; past this the least recently used one is closed and
#: its batch continues in a new part file.
MAX_OPEN = 64

CurveKey = tuple[str, str, str]


@dataclass(frozen=True)
class Plan:
    """Batches of whole objects, by the first (smallest) ``object_id`` of each.

    Only a few numbers per batch are kept, not one entry per object: an id's batch is found
    by bisecting ``starts``.
    """

    starts: list[str]  # first object_id of each batch, increasing
    points: list[int]  # input points of each batch
    objects: int  # distinct object ids in all

    @property
    def n_batches(self) -> int:
        """How many batches."""
        return len(self.starts)

    def batch_of(self, ids: Sequence[str]) -> np.ndarray:
        """The batch number of each id (ids of the inputs only)."""
        return np.array([bisect.bisect_right(self.starts, i) - 1 for i in ids], dtype=np.int64)


@dataclass(frozen=True)
class Batch:
    """One task: the batch number, and per input the spill files of its rows, in order."""

    index: int
    parts: tuple[tuple[str, ...], ...]
    ephemerides: pd.DataFrame | None = None


@dataclass
class BatchResult:
    """What :func:`process_batch` hands back (all data, nothing logged).

    Attributes
    ----------
    clean
        The cleaned rows (``CLEAN_SCHEMA``).
    features
        The features rows (``FEATURES_SCHEMA``).
    feature_plot
        The rows of the features plot table.
    counts
        Cleaning counts (:class:`~astropipe.features.clean.summary.StepCounts`).
    detections_used, groups
        Kept points and their ``(object_id, band)`` groups.
    cdpp
        The features' ``cdpp`` values (for the median in the metrics).
    curves
        Candidates for the raw-vs-clean plot: ``(curve key, points)`` by the plot's rule.
    """

    clean: pa.Table
    features: pa.Table
    feature_plot: pd.DataFrame
    counts: StepCounts
    detections_used: int
    groups: int
    cdpp: np.ndarray
    curves: list[tuple[CurveKey, int]]


def _record_batches(path: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of ``path``, one row group at a time.

    ``ParquetFile.iter_batches`` over the whole file reads ahead across row groups (pyarrow
    26: 285 MB of Arrow memory held while streaming a 276 MB file of 77 row groups, measured);
    asking for one row group at a time keeps one decoded row group in memory.
    """
    pf = open_parquet(path)
    for i in range(pf.metadata.num_row_groups):
        yield from pf.iter_batches(batch_size=READ_ROWS, row_groups=[i], columns=columns)


def _object_ids(path: str, column: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    if column.null_count:
        raise InputFileError(
            f"{path}: {column.null_count} row(s) without object_id; every light-curve row needs "
            "one (re-run the ingest that wrote it)."
        )
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return pc.dictionary_encode(column)


def plan(inputs: Sequence[str], *, batch_points: int) -> Plan:
    """Count each object's points in ``inputs`` and cut the sorted ids into batches.

    A batch gathers consecutive objects while it holds at most ``batch_points`` points; an
    object with more points than that is a batch of its own.
    """
    counts: dict[str, int] = {}
    for path in inputs:
        for rb in _record_batches(path, ["object_id"]):
            enc = _object_ids(path, rb.column(0))
            n = np.bincount(enc.indices.to_numpy(), minlength=len(enc.dictionary))
            for oid, k in zip(enc.dictionary.to_pylist(), n.tolist(), strict=True):
                counts[oid] = counts.get(oid, 0) + k
    starts: list[str] = []
    points: list[int] = []
    for oid in sorted(counts):
        # a new batch when this object would overflow a non-empty one: an object with more
        # than batch_points points never joins the objects before or after it
        if not points or (points[-1] and points[-1] + counts[oid] > batch_points):
            starts.append(oid)
            points.append(0)
        points[-1] += counts[oid]
    return Plan(starts=starts, points=points, objects=len(counts))


class _Spill:
    """Per (batch, input) Arrow IPC part files, at most :data:`MAX_OPEN` open at once."""

    def __init__(self, workdir: Path, n_inputs: int, n_batches: int) -> None:
        self.workdir = workdir
        self.parts: list[list[list[str]]] = [
            [[] for _ in range(n_inputs)] for _ in range(n_batches)
        ]
        self._open: OrderedDict[
            tuple[int, int], tuple[pa.NativeFile, pa.ipc.RecordBatchStreamWriter]
        ] = OrderedDict()

    def write(self, b: int, i: int, table: pa.Table) -> None:
        key = (b, i)
        if key in self._open:
            self._open.move_to_end(key)
        else:
            if len(self._open) >= MAX_OPEN:
                self._close(next(iter(self._open)))
            path = self.workdir / f"b{b:07d}-i{i:02d}-p{len(self.parts[b][i]):04d}.arrow"
            sink = pa.OSFile(str(path), "wb")
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            self._open[key] = (sink, pa.ipc.new_stream(sink, table.schema, options=options))
            self.parts[b][i].append(str(path))
        self._open[key][1].write_table(table)

    def _close(self, key: tuple[int, int]) -> None:
        sink, writer = self._open.pop(key)
        writer.close()
        sink.close()

    def close(self) -> None:
        while self._open:
            self._close(next(iter(self._open)))


def spill(
    inputs: Sequence[str],
    the_plan: Plan,
    workdir: Path,
    *,
    ephemerides: pd.DataFrame | None = None,
) -> list[Batch]:
    """Route every row of ``inputs`` to its batch's spill files in ``workdir`` (absolute).

    Returns one :class:`Batch` per batch, in order, each with the known-transit ephemerides
    of its own objects.
    """
    workdir = Path(workdir).resolve()
    out = _Spill(workdir, len(inputs), the_plan.n_batches)
    try:
        for i, path in enumerate(inputs):
            for rb in _record_batches(path):
                table = pa.Table.from_batches([rb])
                enc = _object_ids(path, table.column("object_id"))
                lookup = the_plan.batch_of(enc.dictionary.to_pylist())
                row_batch = lookup[enc.indices.to_numpy()]
                order = np.argsort(row_batch, kind="stable")  # keeps the input order per batch
                sorted_b = row_batch[order]
                bounds = np.flatnonzero(np.diff(sorted_b)) + 1
                for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(order)], strict=True):
                    out.write(int(sorted_b[lo]), i, table.take(order[lo:hi]))
    finally:
        out.close()
    eph_batch = None
    if ephemerides is not None and len(ephemerides):
        # each batch gets its own objects' rows (the others' would mask nothing there); an
        # id before the first batch's is in no input
        eph_batch = the_plan.batch_of(ephemerides["object_id"].astype(str).tolist())
    batches = []
    for b in range(the_plan.n_batches):
        eph = None
        if eph_batch is not None:
            eph = ephemerides[eph_batch == b].reset_index(drop=True)  # type: ignore[index]
        batches.append(Batch(b, tuple(tuple(p) for p in out.parts[b]), eph))
    return batches


def _read_parts(parts: Sequence[str]) -> Iterator[pa.Table]:
    for path in parts:
        with pa.OSFile(path, "rb") as source:
            yield pa.ipc.open_stream(source).read_all()


def _load(batch: Batch) -> pd.DataFrame:
    """The batch's rows, inputs in order, as the whole table's ``pd.concat`` held them."""
    frames = [
        pa.concat_tables(list(_read_parts(parts))).to_pandas() for parts in batch.parts if parts
    ]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _plot_candidates(
    table: pd.DataFrame, objects: Sequence[str], max_objects: int
) -> list[tuple[CurveKey, int]]:
    """The curves this batch offers the raw-vs-clean plot (the rule of its ``_pick``)."""
    counts = table.groupby(["object_id", "band", "source"], sort=True).size()
    items = [(tuple(k), int(n)) for k, n in counts.items()]
    if objects:
        wanted = set(objects)
        items = [kv for kv in items if kv[0][0] in wanted]
    else:
        items.sort(key=lambda kv: (-kv[1], kv[0]))
    return items[:max_objects]  # type: ignore[return-value]


def process_batch(batch: Batch, *, cfg: FeaturesConfig) -> BatchResult:
    """Clean one batch of whole objects and compute its features.

    Parameters
    ----------
    batch
        Its spill files (absolute paths) and ephemerides (:func:`spill`).
    cfg
        The ``features`` settings.

    Returns
    -------
    BatchResult

    Raises
    ------
    SurveyMixError
        When a group's points come from two surveys.
    """
    cleaned = clean_table(
        _load(batch), cfg.clean, exclude_flags=cfg.exclude_flags, ephemerides=batch.ephemerides
    )
    kept = cleaned[(cleaned["clean_mask"].to_numpy() & REMOVED) == 0]
    feats = with_survey(compute_features(kept, cfg=cfg.extract, min_points=cfg.min_points), kept)
    pcfg = cfg.plots
    return BatchResult(
        clean=pa.Table.from_pandas(cleaned, schema=CLEAN_SCHEMA, preserve_index=False),
        features=pa.Table.from_pandas(feats, schema=FEATURES_SCHEMA, preserve_index=False),
        feature_plot=feature_plot_table(feats, pcfg.features),
        counts=count_steps(cleaned),
        detections_used=len(kept),
        groups=int(kept.groupby(["object_id", "band"]).ngroups) if len(kept) else 0,
        cdpp=feats["cdpp"].to_numpy(np.float64) if "cdpp" in feats else np.zeros(0),
        curves=_plot_candidates(cleaned, pcfg.objects, pcfg.max_objects),
    )


def spill_dir_near(path: str) -> Path:
    """A fresh temporary directory, by absolute path, next to output ``path`` (same
    filesystem, which cluster workers must see), or in its nearest existing ancestor: no
    directory is created for it (a dry run leaves nothing behind).

    Next to ``path`` it is named like :mod:`astropipe.io.atomic`'s temporaries,
    ``.<name>.XXXXXXXX.tmp``, so that a run killed outright leaves nothing the next run (holding
    the output's lock) does not remove with :func:`~astropipe.io.atomic.remove_stale_temps`.
    """
    target = Path(path).resolve()
    parent = target.parent
    while not parent.is_dir():
        parent = parent.parent
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
