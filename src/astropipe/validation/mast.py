"""Contracts of ingest_mast's two tables: ``mast_observations`` and ``mast_products``.

The columns of these tables are the ones MAST's answers declare (they differ between services),
so a contract names only the core CAOM columns every observation or product answer has, with
their declared types, and leaves the rest free:

- observations: ``obs_collection, obs_id, obsid, objID, target_name, dataproduct_type``
  (strings), ``s_ra, s_dec, t_min, t_max`` (float64), ``calib_level`` (int64); unique on
  ``(obsid, objID)`` (one row per observation plane), RA/Dec in range, ``t_min <= t_max``,
  MJDs between 1950 and 2100 (HST and GALEX samples start in the 1990s, so the ZTF-era
  ``validation.ranges.surveys`` ranges do not apply), ``calib_level`` in 0-4 (CAOM's levels);
- products: ``obsID, dataURI, productFilename, productType`` (strings), ``size`` (int64);
  unique on ``(obsID, dataURI)``, ``dataURI`` a ``mast:`` URI, ``size >= 0``.
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from astropipe.validation.config import RangesConfig, TableConfig
from astropipe.validation.rules import (
    STR,
    Contract,
    Rule,
    between,
    completeness,
    sky,
    structure,
    unique,
)

__all__ = [
    "OBSERVATION_COLUMNS",
    "PRODUCT_COLUMNS",
    "MAST_MJD",
    "mast_observations_contract",
    "mast_products_contract",
    "MAST_BUILDERS",
]

#: Core CAOM observation columns → accepted pandas dtypes.
OBSERVATION_COLUMNS: dict[str, tuple[str, ...]] = {
    "obs_collection": STR,
    "obs_id": STR,
    "obsid": STR,
    "objID": STR,
    "target_name": STR,
    "dataproduct_type": STR,
    "s_ra": ("float64",),
    "s_dec": ("float64",),
    "t_min": ("float64",),
    "t_max": ("float64",),
    "calib_level": ("int64", "float64"),  # pandas: float64 when a row has no level
}
#: Core CAOM product columns → accepted pandas dtypes.
PRODUCT_COLUMNS: dict[str, tuple[str, ...]] = {
    "obsID": STR,
    "dataURI": STR,
    "productFilename": STR,
    "productType": STR,
    "size": ("int64", "float64"),
}
#: Plausible observation times, MJD: 1950-01-01 to 2100-01-01.
MAST_MJD = (33282.0, 88069.0)


def mast_observations_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``observations.parquet`` (ingest_mast)."""
    cols = OBSERVATION_COLUMNS
    rules = structure(cols) + completeness("mast_observations", cols, table.completeness)
    rules += [
        unique(["obsid", "objID"]),
        *sky(ranges, ra="s_ra", dec="s_dec"),
        between("t_min", *MAST_MJD, unit="d"),
        between("t_max", *MAST_MJD, unit="d"),
        Rule(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB,
            {
                "column_A": "t_max",
                "column_B": "t_min",
                "or_equal": True,
                "ignore_row_if": "either_value_is_missing",
            },  # fmt: skip
            "t_max >= t_min (an observation ends after it starts)",
        ),
        between("calib_level", 0, 4),
    ]
    return Contract("mast_observations", cols, tuple(rules), key="obs_id")


def mast_products_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``products.parquet`` (ingest_mast)."""
    del ranges  # no sky or time columns
    cols = PRODUCT_COLUMNS
    rules = structure(cols) + completeness("mast_products", cols, table.completeness)
    rules += [
        unique(["obsID", "dataURI"]),
        Rule(
            gxe.ExpectColumnValuesToMatchRegex,
            {"column": "dataURI", "regex": r"^mast:[A-Za-z0-9][^\s]*$"},
            "dataURI is a mast: URI",
        ),
        between("size", 0, None, unit="byte"),
    ]
    return Contract("mast_products", cols, tuple(rules), key="productFilename")


#: Table name in ``validation.tables`` → contract builder.
MAST_BUILDERS = {
    "mast_observations": mast_observations_contract,
    "mast_products": mast_products_contract,
}
