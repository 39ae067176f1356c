"""The ``build_lightcurve_features`` stage: light-curve tables → ``features.parquet``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from astropipe.configtypes import NonEmptyList, NonNegativeInt, PositiveInt, from_mapping
from astropipe.features.extract import (
    OUTPUT_COLUMNS,
    ExtractConfig,
    compute_features,
    points_from_lightcurves,
)
from astropipe.io.tables import read_parquet, write_json, write_parquet
from astropipe.lightcurve import FLAG_NEGATIVE_DIFF
from astropipe.provenance import provenance, relpath, sha256_file

__all__ = ["FeaturesConfig", "run", "FEATURES_SCHEMA"]

log = logging.getLogger(__name__)

FEATURES_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("band", pa.string(), nullable=False),
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
}


@dataclass(frozen=True)
class FeaturesOutputs:
    """Where the stage writes."""

    features: str = "data/processed/features.parquet"
    metrics: str = "reports/metrics/build_lightcurve_features.json"


@dataclass(frozen=True)
class FeaturesConfig:
    """The ``features`` section of params.yaml."""

    inputs: NonEmptyList = field(default_factory=lambda: ["data/raw/ztf/lightcurves.parquet"])
    min_points: PositiveInt = 3
    exclude_flags: NonNegativeInt = FLAG_NEGATIVE_DIFF
    extract: ExtractConfig = field(default_factory=ExtractConfig)
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
    lc = pd.concat(frames, ignore_index=True)
    keep = ~lc["is_upper_limit"].to_numpy(bool) & (
        (lc["flags"].to_numpy() & cfg.exclude_flags) == 0
    )
    dropped = len(lc) - int(keep.sum())
    if len(lc):
        log.info("features: %d of %d rows are upper limits or flagged, not used", dropped, len(lc))
    return lc[keep], hashes


def run(params: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Compute features from ``features.inputs`` and write ``features.outputs.features``."""
    cfg = FeaturesConfig.from_params(params)
    lc, hashes = _load(cfg)
    feats = compute_features(
        points_from_lightcurves(lc), cfg=cfg.extract, min_points=cfg.min_points
    )
    groups = lc.groupby(["object_id", "band"]).ngroups if len(lc) else 0
    summary = {
        "detections_used": len(lc),
        "groups": int(groups),
        "groups_with_features": len(feats),
        "groups_below_min_points": int(groups - len(feats)),
        "bands": {k: int(v) for k, v in feats["band"].value_counts().sort_index().items()},
    }
    if dry_run:
        return {"dry_run": True, **summary}
    table = pa.Table.from_pandas(feats, schema=FEATURES_SCHEMA, preserve_index=False)
    prov = provenance(stage="build_lightcurve_features", inputs=hashes, params=params["features"])
    write_parquet(table, cfg.outputs.features, provenance=prov, units=FEATURE_UNITS)
    write_json(summary, cfg.outputs.metrics)
    return summary
