"""Data contracts as great-expectations suites, built in code (no YAML/JSON suite files).

A :class:`~astropipe.validation.rules.Contract` names a table's required columns with their
accepted pandas dtypes and an ordered list of :class:`~astropipe.validation.rules.Rule` objects
(one GX expectation each, with a one-line human reading), built with the rule builders of
:mod:`astropipe.validation.rules`; this module holds the ZTF tables' contracts.
:func:`build_suite` turns a contract into an ``ExpectationSuite``; each expectation carries its
position and reading in ``meta`` so results can be reported in contract order.

Columns present in a table but absent from its contract are allowed; a missing contract column
fails its ``expect_column_to_exist`` expectation (and the column's other expectations report the
missing column instead of a value).

The contracts follow issue 2 §5: columns and dtypes, ra in [0, 360), dec in [-90, 90],
plausible magnitudes, MJD in each survey's era, unique keys, and completeness (non-null
fractions). Tables with a ``survey`` column (light curves, features) are checked row by row
against their survey's entry of ``validation.ranges.surveys`` (MJD range, band names); a survey
not listed there fails ``survey in {...}``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402  (after the telemetry switch)
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.expectations.row_conditions import Column  # noqa: E402

from astropipe.errors import ConfigError  # noqa: E402
from astropipe.features.stage import FEATURES_SCHEMA  # noqa: E402
from astropipe.lightcurve import LIGHTCURVE_KEY, LIGHTCURVE_SCHEMA  # noqa: E402
from astropipe.validation.config import (  # noqa: E402
    ALERTS_SURVEY,
    RangesConfig,
    TableConfig,
)
from astropipe.validation.rules import (  # noqa: E402
    FLOAT,
    INT,
    STR,
    Contract,
    Rule,
    between,
    by_survey,
    completeness,
    fmt,
    in_set,
    pandas_dtype,
    sky,
    structure,
    unique,
)

__all__ = [
    "Rule",
    "Contract",
    "ALERT_COLUMNS",
    "FEATURE_COLUMNS",
    "LIGHTCURVE_COLUMNS",
    "alerts_contract",
    "lightcurves_contract",
    "features_contract",
    "contract_for",
    "build_suite",
]

#: alerts.parquet: required columns → accepted pandas dtypes (ingest_ztf writes narrower
#: ints/floats for some candidate fields, so both widths are accepted there).
ALERT_COLUMNS: dict[str, tuple[str, ...]] = {
    "objectId": STR,
    "candid": ("int64",),
    "alertId": ("int64", "float64"),  # null except in v1.0/v1.1 packets (pandas: float64)
    "jd": ("float64",),
    "mjd": ("float64",),
    "fid": INT,
    "band": STR,
    "ra": ("float64",),
    "dec": ("float64",),
    "magpsf": FLOAT,
    "sigmapsf": FLOAT,
    "rb": FLOAT,
    "drb": FLOAT,
    "isdiffpos": STR,
    "programid": INT,
    "schemavsn": STR,
}


#: lightcurves.parquet: exactly :data:`astropipe.lightcurve.LIGHTCURVE_SCHEMA`.
LIGHTCURVE_COLUMNS: dict[str, tuple[str, ...]] = {
    f.name: pandas_dtype(f.type) for f in LIGHTCURVE_SCHEMA
}

#: features.parquet: exactly :data:`astropipe.features.stage.FEATURES_SCHEMA` (float features
#: may be NaN where undefined).
FEATURE_COLUMNS: dict[str, tuple[str, ...]] = {
    f.name: pandas_dtype(f.type) for f in FEATURES_SCHEMA
}


def alerts_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``alerts.parquet`` (one row per alert, from ingest_ztf)."""
    cols = ALERT_COLUMNS
    rules = structure(cols) + completeness("alerts", cols, table.completeness)
    rules += [
        # v1.0/v1.1 (2016 pre-survey) packets name the alert by alertId and have no objectId;
        # every later packet must carry an objectId.
        Rule(
            gxe.ExpectColumnValuesToNotBeNull,
            {"column": "objectId", "row_condition": Column("alertId").is_null()},
            "objectId non-null wherever alertId is null (every packet since v1.7)",
        ),
        unique(["candid"]),
        *sky(ranges),
        # alerts.parquet has no survey column: every alert is ZTF's
        between("mjd", *ranges.survey(ALERTS_SURVEY).mjd, unit="d"),
        between("magpsf", *ranges.mag, unit="mag"),
        between("sigmapsf", 0.0, None, unit="mag"),
        between("rb", 0.0, 1.0),
        between("drb", 0.0, 1.0),
        in_set("fid", [1, 2, 3]),
        in_set("band", ranges.survey(ALERTS_SURVEY).bands),
        in_set("isdiffpos", ["t", "f"]),
    ]
    return Contract("alerts", cols, tuple(rules))


def lightcurves_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``lightcurves.parquet`` (the common light-curve schema)."""
    cols = LIGHTCURVE_COLUMNS
    rules = structure(cols) + completeness("lightcurves", cols, table.completeness)
    # flux surveys (TESS/Kepler/K2) fill flux instead of mag
    detections = (Column("is_upper_limit") == False) & Column("flux").is_null()  # noqa: E712
    rules += [
        Rule(
            gxe.ExpectColumnValuesToNotBeNull,
            {"column": "mag", "row_condition": detections},
            "mag non-null on every detection without a flux (is_upper_limit false, flux null)",
        ),
        unique(list(LIGHTCURVE_KEY)),
        *sky(ranges),
        between("mag", *ranges.mag, unit="mag"),
        between("limiting_mag", *ranges.limiting_mag, unit="mag"),
        between("mag_err", 0.0, None, unit="mag"),
        between("flux_err", 0.0, None),
        *by_survey(ranges),
    ]
    return Contract("lightcurves", cols, tuple(rules))


def features_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``features.parquet`` (one row per object and band; magnitude groups have
    ``mag_peak``, flux groups ``flux_peak``)."""
    cols = FEATURE_COLUMNS
    rules = structure(cols) + completeness("features", cols, table.completeness)
    magnitudes = Column("mag_peak").is_not_null()
    rules += [
        unique(["object_id", "band"]),
        between("n_obs", 1, None),
        between("time_span", 0.0, None, unit="d"),
        *(
            Rule(
                gxe.ExpectColumnValuesToBeBetween,
                {
                    "column": c,
                    "min_value": ranges.mag[0],
                    "max_value": ranges.mag[1],
                    "row_condition": magnitudes,
                },
                f"{c} in [{fmt(ranges.mag[0])}, {fmt(ranges.mag[1])}] mag where mag_peak is set"
                " (magnitude groups; nulls ignored)",
            )
            for c in ("mean", "median")
        ),
        between("std", 0.0, None, unit="mag"),
        between("amplitude", 0.0, None, unit="mag"),
        between("mad", 0.0, None, unit="mag"),
        between("rise_time", 0.0, None, unit="d"),
        between("decay_time", 0.0, None, unit="d"),
        between("beyond_1_std", 0.0, 1.0),
        between("beyond_2_std", 0.0, 1.0),
        between("stetson_k", 0.0, 1.0),
        between("eta", 0.0, None),
        between("linear_fit_slope_sigma", 0.0, None),
        between("linear_fit_reduced_chi2", 0.0, None),
        between("ls_period", 0.0, None, unit="d"),
        between("ls_power", 0.0, 1.0),
        between("ls_fap", 0.0, 1.0),
        between("cdpp", 0.0, None, unit="ppm"),
        *by_survey(ranges, mjd=("mjd_first", "mjd_last")),
    ]
    return Contract("features", cols, tuple(rules))


_BUILDERS = {
    "alerts": alerts_contract,
    "lightcurves": lightcurves_contract,
    "features": features_contract,
}


def contract_for(name: str, table: TableConfig, ranges: RangesConfig) -> Contract:
    """Return the contract of table ``name`` (alerts, lightcurves, features; catalogs: koi, toi,
    k2, objects; ingest_mast: mast_observations, mast_products)."""
    # imported here: the catalog and MAST contracts (validation/catalogs.py, validation/mast.py)
    # use this module's helpers
    from astropipe.validation.catalogs import CATALOG_BUILDERS
    from astropipe.validation.mast import MAST_BUILDERS

    builders = {**_BUILDERS, **CATALOG_BUILDERS, **MAST_BUILDERS}
    try:
        builder = builders[name]
    except KeyError:
        raise ConfigError(
            f"validation.tables: no contract for table {name!r}; valid tables are {list(builders)}."
        ) from None
    return builder(table, ranges)


def build_suite(contract: Contract) -> gx.ExpectationSuite:
    """Build the GX suite of ``contract``; ``meta`` holds each rule's position and reading."""
    # Passing the list at once skips add_expectation's quadratic duplicate check.
    expectations = [
        rule.expectation(order=i, rule=rule.text) for i, rule in enumerate(contract.rules)
    ]
    return gx.ExpectationSuite(name=contract.table, expectations=expectations)
