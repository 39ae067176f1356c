"""The ``build_lightcurve_features`` stage: light-curve tables → ``features.parquet``.

The points are read, cleaned and turned into features in batches of whole objects
(:mod:`astropipe.features.batches`), run through the ``compute`` group's workers and merged in
batch order; the outputs are written row group by row group (:mod:`astropipe.features.output`).
Memory therefore stays flat however many curves there are, and the bytes do not depend on the
scheduler, the number of workers or ``features.batch_points``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from astropipe.compute import ComputeConfig, workers
from astropipe.configtypes import NonEmptyList, NonNegativeInt, PositiveInt, from_mapping
from astropipe.features.batches import (
    Batch,
    BatchResult,
    Plan,
    plan,
    process_batch,
    spill,
    spill_dir_near,
)
from astropipe.features.clean import CleanConfig, catalog_ephemerides
from astropipe.features.clean.masks import STEP_BITS
from astropipe.features.clean.pipeline import CLEAN_SCHEMA, CLEAN_UNITS
from astropipe.features.clean.report import lightcurve_plot_table
from astropipe.features.clean.summary import StepCounts, report
from astropipe.features.extract import ExtractConfig
from astropipe.features.output import (
    CLEAN_GROUP_ROWS,
    FEATURE_UNITS,
    FEATURES_GROUP_ROWS,
    FEATURES_SCHEMA,
    CsvRows,
    SurveyMixError,
)
from astropipe.io.atomic import atomic_path, remove_stale_temps
from astropipe.io.lock import OutputLock
from astropipe.io.tables import ParquetRowGroups, dumps_json, file_metadata
from astropipe.lightcurve import FLAG_NEGATIVE_DIFF, FLAG_QUALITY_MASKED
from astropipe.provenance import provenance, relpath, sha256_file

__all__ = ["FeaturesConfig", "SurveyMixError", "run", "FEATURES_SCHEMA", "FEATURE_UNITS"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeaturesOutputs:
    """Where the stage writes."""

    features: str = "data/processed/features.parquet"
    metrics: str = "reports/metrics/build_lightcurve_features.json"
    clean: str = "data/interim/lightcurves_clean.parquet"
    plot_lightcurves: str = "reports/plots/clean_lightcurves.csv"
    plot_features: str = "reports/plots/features.csv"


@dataclass(frozen=True)
class FeaturesPlots:
    """What the ``dvc plots`` tables show."""

    objects: list[str] = field(default_factory=list)  # [] = the curves with the most points
    max_objects: PositiveInt = 3
    max_points: PositiveInt = 2000
    features: list[str] = field(default_factory=lambda: ["median", "std", "amplitude"])


@dataclass(frozen=True)
class FeaturesConfig:
    """The ``features`` section of params.yaml."""

    inputs: NonEmptyList = field(
        default_factory=lambda: [
            "data/raw/ztf/lightcurves.parquet",
            "data/raw/tess/lightcurves.parquet",
        ]
    )
    min_points: PositiveInt = 3
    # ZTF negative-difference alerts and TESS/Kepler cadences masked by ingest_tess's preset
    exclude_flags: NonNegativeInt = FLAG_NEGATIVE_DIFF | FLAG_QUALITY_MASKED
    # input points per task: whole objects are gathered while a batch holds at most this many
    # (an object with more is a batch of its own); speed and memory only, never the outputs
    batch_points: PositiveInt = 1 << 15
    clean: CleanConfig = field(default_factory=CleanConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    plots: FeaturesPlots = field(default_factory=FeaturesPlots)
    outputs: FeaturesOutputs = field(default_factory=FeaturesOutputs)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FeaturesConfig:
        """Build from the full params mapping, checking every key's type and range."""
        return from_mapping(cls, params.get("features") or {}, where="features")


def _ephemerides(cfg: FeaturesConfig, hashes: dict[str, str]) -> pd.DataFrame | None:
    tc = cfg.clean.detrend.transits
    if not tc.from_catalogs:
        return None
    eph = catalog_ephemerides(tc.catalogs_dir)
    for name in ("objects", "koi", "toi"):
        path = f"{tc.catalogs_dir}/{name}.parquet"
        if Path(path).is_file():
            hashes[relpath(path)] = sha256_file(path)
    return eph


#: ``features`` keys that change speed and memory, never a byte of the outputs: left out of
#: the provenance written into them.
_NOT_IN_PROVENANCE = ("batch_points",)


def _provenance_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params["features"].items() if k not in _NOT_IN_PROVENANCE}


@dataclass
class _Totals:
    """The batches' results merged in order: what the metrics and the plot need."""

    counts: StepCounts = field(default_factory=StepCounts)
    detections_used: int = 0
    groups: int = 0
    features: int = 0
    cdpp: list[np.ndarray] = field(default_factory=list)
    curves: list[tuple[tuple[str, str, str], int]] = field(default_factory=list)

    def add(self, res: BatchResult) -> None:
        self.counts.add(res.counts)
        self.detections_used += res.detections_used
        self.groups += res.groups
        self.features += res.features.num_rows
        self.cdpp.append(res.cdpp)
        self.curves.extend(res.curves)


def _metrics(totals: _Totals, clean_summary: Mapping[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "detections_used": totals.detections_used,
        "groups": totals.groups,
        "groups_with_features": totals.features,
        "groups_below_min_points": totals.groups - totals.features,
        # A few readable numbers for `dvc exp show --only-changed`; per-survey counts are in
        # the cleaned table's metadata.
        "clean": {k: v for k, v in clean_summary.items() if k != "by_survey"},
    }
    cdpp = np.concatenate(totals.cdpp) if totals.cdpp else np.zeros(0)
    if np.isfinite(cdpp).any():
        # Rounded for a readable `dvc exp show` column (0.001 ppm is far below any change
        # that matters).
        summary["median_cdpp_ppm"] = round(float(np.nanmedian(cdpp)), 3)
    return summary


def _plotted_curves(totals: _Totals, plots: FeaturesPlots) -> list[str]:
    """Object ids of the curves the raw-vs-clean plot shows (its ``_pick`` over all batches)."""
    items = sorted(totals.curves, key=lambda kv: kv[0] if plots.objects else (-kv[1], kv[0]))
    return sorted({key[0] for key, _ in items[: plots.max_objects]})


def _lightcurve_plot(cfg: FeaturesConfig, clean: Path, objects: list[str]) -> pd.DataFrame:
    """The raw-vs-clean plot table, from the rows of ``objects`` in the written clean table
    ``clean`` (read one row group at a time)."""
    wanted = pa.array(objects, pa.string())
    pf = pq.ParquetFile(clean)
    parts = [CLEAN_SCHEMA.empty_table()]
    for i in range(pf.metadata.num_row_groups if objects else 0):
        group = pf.read_row_group(i)
        parts.append(group.filter(pc.is_in(group.column("object_id"), value_set=wanted)))
    rows = pa.concat_tables(parts).to_pandas()
    plots = cfg.plots
    return lightcurve_plot_table(
        rows, objects=plots.objects, max_objects=plots.max_objects, max_points=plots.max_points
    )


def _read_spill(path: Path) -> Iterable[pa.Table]:
    with pa.OSFile(str(path), "rb") as source:
        for rb in pa.ipc.open_stream(source):
            yield pa.Table.from_batches([rb])


def _run_batches(
    cfg: FeaturesConfig, params: Mapping[str, Any], batches: list[Batch], workdir: Path,
    outputs: contextlib.ExitStack, *, prov: Mapping[str, Any], dry_run: bool,
) -> _Totals:  # fmt: skip
    """Run every batch on the ``compute`` workers; write the features and their plot table as
    the results come (their writers entered into ``outputs``, finished but not yet moved into
    place), the cleaned rows to ``workdir/clean.arrow``."""
    totals = _Totals()
    plot_columns = ["object_id", "band"]
    plot_columns += [c for c in cfg.plots.features if c in FEATURES_SCHEMA.names]
    with contextlib.ExitStack() as spilled:
        if not dry_run:
            spill_file = spilled.enter_context(pa.OSFile(str(workdir / "clean.arrow"), "wb"))
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            clean_rows = spilled.enter_context(
                pa.ipc.new_stream(spill_file, CLEAN_SCHEMA, options=options)
            )
            feature_rows = outputs.enter_context(
                ParquetRowGroups(
                    cfg.outputs.features,
                    FEATURES_SCHEMA,
                    file_metadata(prov, FEATURE_UNITS),
                    rows=FEATURES_GROUP_ROWS,
                )
            )
            plot_rows = outputs.enter_context(CsvRows(cfg.outputs.plot_features, plot_columns))
        with workers(ComputeConfig.from_params(params)) as pool:
            for res in pool.map(process_batch, batches, cfg=cfg):
                totals.add(res)
                if not dry_run:
                    clean_rows.write_table(res.clean)
                    feature_rows.write(res.features)
                    plot_rows.write(res.feature_plot)
        if not dry_run:
            feature_rows.finish()
            plot_rows.finish()
    return totals


def run(params: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Clean the light curves of ``features.inputs``, write them to ``features.outputs.clean``,
    and compute features from the kept points into ``features.outputs.features``.

    The work runs in batches of whole objects (``features.batch_points`` input points each)
    on the ``compute`` group's workers; see the module docstring.
    """
    cfg = FeaturesConfig.from_params(params)
    ComputeConfig.from_params(params)  # a bad compute section fails before any work
    the_plan = plan(cfg.inputs, batch_points=cfg.batch_points)
    hashes = {relpath(path): sha256_file(path) for path in cfg.inputs}
    ephemerides = _ephemerides(cfg, hashes)
    prov = provenance(
        stage="build_lightcurve_features", inputs=hashes, params=_provenance_params(params)
    )
    with contextlib.ExitStack() as stack:
        if not dry_run:  # a dry run writes nothing, so it needs no lock and removes nothing
            stack.enter_context(OutputLock(cfg.outputs.clean, writer="build_lightcurve_features"))
            for target in _output_paths(cfg.outputs):
                remove_stale_temps(target)  # a killed run's spill and temporaries
        return _run_locked(cfg, params, the_plan, ephemerides, prov, dry_run=dry_run)


def _output_paths(outputs: FeaturesOutputs) -> list[str]:
    return [getattr(outputs, f.name) for f in fields(outputs)]


def _run_locked(
    cfg: FeaturesConfig,
    params: Mapping[str, Any],
    the_plan: Plan,
    ephemerides: pd.DataFrame | None,
    prov: dict[str, Any],
    *,
    dry_run: bool,
) -> dict[str, Any]:
    """Spill, run the batches and write the outputs (under the clean output's lock).

    Every output is written under a temporary name, and all are moved into place only once
    the last one is written: a failure leaves the previous run's outputs as they were, never
    new features next to an old cleaned table.
    """
    workdir = spill_dir_near(cfg.outputs.clean)
    try:
        batches = spill(cfg.inputs, the_plan, workdir, ephemerides=ephemerides)
        log.info(
            "features: %d objects, %d points in %d batches (features.batch_points=%d)",
            the_plan.objects,
            sum(the_plan.points),
            len(batches),
            cfg.batch_points,
        )
        with contextlib.ExitStack() as outputs:  # each output's rename, when the block ends
            totals = _run_batches(
                cfg, params, batches, workdir, outputs, prov=prov, dry_run=dry_run
            )
            clean_summary = report(totals.counts, warn_fraction=cfg.clean.warn_fraction)
            summary = _metrics(totals, clean_summary)
            if dry_run:
                return {"dry_run": True, **summary}
            meta = file_metadata(
                {**prov, "clean_mask_bits": dict(STEP_BITS), "clean_summary": clean_summary},
                CLEAN_UNITS,
            )
            clean = outputs.enter_context(
                ParquetRowGroups(cfg.outputs.clean, CLEAN_SCHEMA, meta, rows=CLEAN_GROUP_ROWS)
            )
            for table in _read_spill(workdir / "clean.arrow"):
                clean.write(table)
            shown = _plotted_curves(totals, cfg.plots)
            plot = _lightcurve_plot(cfg, clean.finish(), shown)
            plot_file = CsvRows(cfg.outputs.plot_lightcurves, list(plot.columns))
            outputs.enter_context(plot_file).write(plot)
            metrics = outputs.enter_context(atomic_path(cfg.outputs.metrics))
            metrics.write_text(dumps_json(summary), encoding="utf-8")  # as write_json writes
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary
