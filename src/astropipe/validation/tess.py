"""The ``tess_lightcurves`` contract: TESS/Kepler/K2 light curves written by ingest_tess.

The great-expectations suite runs on the table's rows plus four columns derived here, because
the checks that matter are per light curve (one object, mission, season, product and cadence:
:data:`~astropipe.tess.columns.SEGMENT`), which GX cannot group by itself:

- ``light_curve``: a label such as ``"TIC 261136679 TESS S1 spoc 120s"``, the contract key,
  so a failure names the light curve;
- ``mjd_increases``: the row's time is later than the previous row of its light curve, in the
  order stored (true on a light curve's first row);
- ``quality_unknown_bits``: the QUALITY bits the row's layout may not set. What each layout
  may set (its mission's documented bits and the product's own, eleanor's 2^17 and 2^18) is
  read from the file, where ingest_tess declared it through
  :func:`~astropipe.tess.columns.read_known_quality_bits`; a layout it did not declare makes
  every bit unknown;
- ``lc_flux_finite_fraction``: the fraction of the light curve's cadences with a finite flux.
"""

from __future__ import annotations

import logging
from pathlib import Path

import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
import pyarrow as pa
from great_expectations.expectations.row_conditions import Column

from astropipe.io.tables import read_parquet
from astropipe.lightcurve import SURVEY_FLAGS_MASK
from astropipe.tess.columns import (
    CADENCE_KEY,
    MISSIONS,
    SEGMENT,
    TESS_LIGHTCURVE_SCHEMA,
    read_known_quality_bits,
)
from astropipe.validation.config import RangesConfig, TessLightcurvesConfig
from astropipe.validation.rules import (
    Contract,
    Rule,
    between,
    completeness,
    in_set,
    pandas_dtype,
    sky,
    structure,
    unique,
)

__all__ = [
    "TESS_LIGHTCURVE_COLUMNS",
    "DERIVED_COLUMNS",
    "tess_lightcurves_table",
    "tess_lightcurves_contract",
]

log = logging.getLogger(__name__)


def _dtypes(field: pa.Field) -> tuple[str, ...]:
    own = pandas_dtype(field.type)
    # pandas reads an integer column holding nulls (sector on Kepler rows) as float64
    if pa.types.is_integer(field.type) and field.nullable:
        return (*own, "float64")
    return own


#: lightcurves.parquet: :data:`~astropipe.tess.columns.TESS_LIGHTCURVE_SCHEMA` → pandas dtypes.
TESS_LIGHTCURVE_COLUMNS: dict[str, tuple[str, ...]] = {
    f.name: _dtypes(f) for f in TESS_LIGHTCURVE_SCHEMA
}
#: Columns added by :func:`tess_lightcurves_table` (see the module docstring).
DERIVED_COLUMNS = (
    "light_curve",
    "mjd_increases",
    "quality_unknown_bits",
    "flags_hold_quality",
    "lc_flux_finite_fraction",
)
_SEASON = {m.name: m.season_key.lower() for m in MISSIONS.values()}


def _labels(segments: pd.DataFrame) -> pd.Series:
    def num(col: str, prefix: str) -> pd.Series:
        v = segments[col]
        return v.map(lambda x: "" if pd.isna(x) else f" {prefix}{int(x)}")

    cadence = segments["cadence_s"].map(lambda x: "" if pd.isna(x) else f" {x:g}s")
    return (
        segments["object_id"].astype(str)
        + " "
        + segments["mission"].astype(str)
        + num("sector", "S")
        + num("quarter", "Q")
        + num("campaign", "C")
        + " "
        + segments["source"].astype(str)
        + cadence
    )


def tess_lightcurves_table(cfg: TessLightcurvesConfig) -> pd.DataFrame:
    """Read ``cfg.path`` and add :data:`DERIVED_COLUMNS`; rows keep the stored order."""
    path = Path(cfg.path)
    df = read_parquet(path).to_pandas()
    known = read_known_quality_bits(path)
    missing = [c for c in (*CADENCE_KEY, "quality", "flags", "flux") if c not in df.columns]
    if missing:  # the structure rules report these; the derived columns cannot be built
        for col in DERIVED_COLUMNS:
            df[col] = pd.Series(dtype="object")
        return df
    group = df.groupby(list(SEGMENT), dropna=False, sort=False)
    gid = group.ngroup()
    segments = group.size().reset_index()[list(SEGMENT)]
    df["light_curve"] = _labels(segments).to_numpy()[gid.to_numpy()]
    step = df.groupby(gid)["mjd"].diff()
    df["mjd_increases"] = (group.cumcount() == 0) | (step > 0)
    allowed = df["source"].map(known).fillna(0).astype("int64")
    quality = df["quality"].astype("int64")
    df["quality_unknown_bits"] = quality & ~allowed
    df.loc[~df["source"].isin(list(known)), "quality_unknown_bits"] = quality | (1 << 32)
    df["flags_hold_quality"] = (df["flags"].astype("int64") & SURVEY_FLAGS_MASK) == quality
    finite = pd.Series(np.isfinite(df["flux"].to_numpy(dtype="float64")), index=df.index)
    df["lc_flux_finite_fraction"] = finite.groupby(gid).transform("mean")
    # debug only: this runs inside the contract's task (Suite.build), whose log never reaches
    # the stage's from a process or cluster worker; the stage logs the report's rows at info
    log.debug("tess_lightcurves: %d rows, %d light curves", len(df), len(segments))
    return df


def tess_lightcurves_contract(cfg: TessLightcurvesConfig, ranges: RangesConfig) -> Contract:
    """Contract of ingest_tess's lightcurves.parquet (rows plus :data:`DERIVED_COLUMNS`)."""
    cols = TESS_LIGHTCURVE_COLUMNS
    rules = structure(cols) + completeness("tess_lightcurves", cols, cfg.completeness)
    fin = cfg.min_flux_finite_fraction
    rules += [
        unique(list(CADENCE_KEY)),
        Rule(
            gxe.ExpectColumnValuesToBeInSet,
            {"column": "mjd_increases", "value_set": [True]},
            "time increases within every light curve (object, mission, season, product, "
            "cadence), in the order stored",
        ),
        Rule(
            gxe.ExpectColumnValuesToBeBetween,
            {"column": "quality_unknown_bits", "min_value": 0, "max_value": 0},
            "QUALITY holds only bits its mission documents (TESS 0-15, Kepler/K2 0-20 but 9) "
            "or its product declares (eleanor 17, 18)",
        ),
        Rule(
            gxe.ExpectColumnValuesToBeInSet,
            {"column": "flags_hold_quality", "value_set": [True]},
            "flags bits 0-31 equal QUALITY (survey bits never shifted)",
        ),
        Rule(
            gxe.ExpectColumnValuesToBeBetween,
            {"column": "lc_flux_finite_fraction", "min_value": fin, "max_value": 1.0},
            f"flux finite on >= {fin * 100:g}% of each light curve's cadences",
        ),
        in_set("mission", sorted(_SEASON)),
        in_set("survey", sorted(_SEASON)),
        in_set("band", sorted({m.band for m in MISSIONS.values()})),
        *[
            Rule(
                gxe.ExpectColumnValuesToNotBeNull,
                {"column": season, "row_condition": Column("mission") == mission},
                f"{season} non-null on {mission} rows",
            )
            for mission, season in sorted(_SEASON.items())
        ],
        *sky(ranges),
        between("mjd", *cfg.mjd, unit="d"),
        between("flux_err", 0.0, None, unit="electron / s"),
        between("cadence_s", 0.0, None, unit="s"),
        between("quality", 0, None),
    ]
    return Contract("tess_lightcurves", cols, tuple(rules), key="light_curve")
