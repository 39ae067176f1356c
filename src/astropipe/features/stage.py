"""The ``build_lightcurve_features`` stage: light-curve tables → ``features.parquet``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from astropipe.configtypes import NonEmptyList, NonNegativeInt, PositiveInt, from_mapping
from astropipe.errors import AstropipeError
from astropipe.features.clean import CleanConfig, catalog_ephemerides, clean_lightcurves
from astropipe.features.clean.masks import REMOVED, STEP_BITS
from astropipe.features.clean.pipeline import CLEAN_SCHEMA, CLEAN_UNITS
from astropipe.features.clean.report import feature_plot_table, lightcurve_plot_table, write_csv
from astropipe.features.extract import (
    OUTPUT_COLUMNS,
    ExtractConfig,
    compute_features,
)
from astropipe.io.tables import read_parquet, write_json, write_parquet
from astropipe.lightcurve import FLAG_NEGATIVE_DIFF, FLAG_QUALITY_MASKED
from astropipe.provenance import provenance, relpath, sha256_file

__all__ = ["FeaturesConfig", "SurveyMixError", "run", "FEATURES_SCHEMA"]

log = logging.getLogger(__name__)

FEATURES_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("band", pa.string(), nullable=False),
        # the light curves' survey (ZTF, TESS, Kepler, K2): the validate stage checks each
        # row's band and MJD against its survey's range
        pa.field("survey", pa.string(), nullable=False),
    ]
    + [pa.field(c, pa.int64() if c == "n_obs" else pa.float64()) for c in OUTPUT_COLUMNS]
)
FEATURE_UNITS = {
    "time_span": "d",
    "mjd_first": "d",
    "mjd_last": "d",
    "mjd_peak": "d",
    "mean": "mag",
    "median": "mag",
    "std": "mag",
    "amplitude": "mag",
    "mad": "mag",
    "mag_peak": "mag",
    "slope": "mag / d",
    "rise_rate": "mag / d",
    "decay_rate": "mag / d",
    # Value columns are in magnitudes for magnitude groups (mag_peak set) and in the light
    # curve's flux unit for flux groups (flux_peak set; TESS/Kepler e-/s).
    "flux_peak": "electron / s",
    "rise_time": "d",
    "decay_time": "d",
    "inter_percentile_range_5": "mag",
    "inter_percentile_range_10": "mag",
    "inter_percentile_range_20": "mag",
    "linear_fit_slope": "mag / d",
    "linear_fit_slope_sigma": "mag / d",
    "ls_period": "d",
    "cdpp": "ppm",
}


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
    clean: CleanConfig = field(default_factory=CleanConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    plots: FeaturesPlots = field(default_factory=FeaturesPlots)
    outputs: FeaturesOutputs = field(default_factory=FeaturesOutputs)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FeaturesConfig:
        """Build from the full params mapping, checking every key's type and range."""
        return from_mapping(cls, params.get("features") or {}, where="features")


def _load(cfg: FeaturesConfig) -> tuple[pd.DataFrame, dict[str, str]]:
    frames, hashes = [], {}
    for path in cfg.inputs:
        frames.append(read_parquet(path).to_pandas())
        hashes[relpath(path)] = sha256_file(path)
    return pd.concat(frames, ignore_index=True), hashes


class SurveyMixError(AstropipeError, ValueError):
    """One ``(object_id, band)`` group holds points of more than one survey."""


def _with_survey(feats: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """``feats`` with a ``survey`` column after ``band``: the survey of its group's points."""
    per = kept.groupby(["object_id", "band"], sort=True)["survey"].agg(["first", "nunique"])
    mixed = per[per["nunique"] > 1]
    if len(mixed):
        oid, band = mixed.index[0]
        rows = (kept["object_id"] == oid) & (kept["band"] == band)
        raise SurveyMixError(
            f"features.inputs: object {oid!r} band {band!r} has points of several surveys "
            f"{sorted(kept.loc[rows, 'survey'].unique())}; give each survey's objects distinct "
            "object_id values."
        )
    survey = per["first"].reindex(pd.MultiIndex.from_frame(feats[["object_id", "band"]]))
    out = feats.copy()
    out.insert(2, "survey", survey.to_numpy(object))
    return out


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


def run(params: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Clean the light curves of ``features.inputs``, write them to ``features.outputs.clean``,
    and compute features from the kept points into ``features.outputs.features``."""
    cfg = FeaturesConfig.from_params(params)
    lc, hashes = _load(cfg)
    cleaned, clean_summary = clean_lightcurves(
        lc, cfg.clean, exclude_flags=cfg.exclude_flags, ephemerides=_ephemerides(cfg, hashes)
    )
    kept = cleaned[(cleaned["clean_mask"].to_numpy() & REMOVED) == 0]
    feats = _with_survey(compute_features(kept, cfg=cfg.extract, min_points=cfg.min_points), kept)
    groups = kept.groupby(["object_id", "band"]).ngroups if len(kept) else 0
    summary = {
        "detections_used": len(kept),
        "groups": int(groups),
        "groups_with_features": len(feats),
        "groups_below_min_points": int(groups - len(feats)),
        # A few readable numbers for `dvc exp show --only-changed`; per-survey counts are in
        # the cleaned table's metadata.
        "clean": {k: v for k, v in clean_summary.items() if k != "by_survey"},
    }
    if "cdpp" in feats.columns and feats["cdpp"].notna().any():
        # Rounded for a readable `dvc exp show` column (0.001 ppm is far below any change
        # that matters).
        median_cdpp = float(np.nanmedian(feats["cdpp"].to_numpy(np.float64)))
        summary["median_cdpp_ppm"] = round(median_cdpp, 3)
    if dry_run:
        return {"dry_run": True, **summary}
    prov = provenance(stage="build_lightcurve_features", inputs=hashes, params=params["features"])
    clean_table = pa.Table.from_pandas(cleaned, schema=CLEAN_SCHEMA, preserve_index=False)
    write_parquet(
        clean_table,
        cfg.outputs.clean,
        provenance={**prov, "clean_mask_bits": dict(STEP_BITS), "clean_summary": clean_summary},
        units=CLEAN_UNITS,
    )
    table = pa.Table.from_pandas(feats, schema=FEATURES_SCHEMA, preserve_index=False)
    write_parquet(table, cfg.outputs.features, provenance=prov, units=FEATURE_UNITS)
    pc = cfg.plots
    write_csv(
        lightcurve_plot_table(
            cleaned, objects=pc.objects, max_objects=pc.max_objects, max_points=pc.max_points
        ),
        cfg.outputs.plot_lightcurves,
    )
    write_csv(feature_plot_table(feats, pc.features), cfg.outputs.plot_features)
    write_json(summary, cfg.outputs.metrics)
    return summary
