"""Data contracts as great-expectations suites, built in code (no YAML/JSON suite files).

A :class:`Contract` names a table's required columns with their accepted pandas dtypes and an
ordered list of :class:`Rule` objects (one GX expectation each, with a one-line human reading).
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402  (after the telemetry switch)
import great_expectations.expectations as gxe  # noqa: E402
import pyarrow as pa  # noqa: E402
from great_expectations.expectations.row_conditions import Column  # noqa: E402

from astropipe.errors import ConfigError  # noqa: E402
from astropipe.features.stage import FEATURES_SCHEMA  # noqa: E402
from astropipe.lightcurve import LIGHTCURVE_KEY, LIGHTCURVE_SCHEMA  # noqa: E402
from astropipe.validation.config import (  # noqa: E402
    ALERTS_SURVEY,
    RangesConfig,
    TableConfig,
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

_INT = ("int64", "int32")
_FLOAT = ("float64", "float32")
# pandas >= 3 reads Arrow strings as its "str" dtype; GX matches it with type_="str".
_STR = ("str",)

#: alerts.parquet: required columns → accepted pandas dtypes (ingest_ztf writes narrower
#: ints/floats for some candidate fields, so both widths are accepted there).
ALERT_COLUMNS: dict[str, tuple[str, ...]] = {
    "objectId": _STR,
    "candid": ("int64",),
    "alertId": ("int64", "float64"),  # null except in v1.0/v1.1 packets (pandas: float64)
    "jd": ("float64",),
    "mjd": ("float64",),
    "fid": _INT,
    "band": _STR,
    "ra": ("float64",),
    "dec": ("float64",),
    "magpsf": _FLOAT,
    "sigmapsf": _FLOAT,
    "rb": _FLOAT,
    "drb": _FLOAT,
    "isdiffpos": _STR,
    "programid": _INT,
    "schemavsn": _STR,
}


def _pandas_dtype(t: pa.DataType) -> tuple[str, ...]:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _STR
    if pa.types.is_boolean(t):
        return ("bool",)
    return (t.to_pandas_dtype().__name__,)


#: lightcurves.parquet: exactly :data:`astropipe.lightcurve.LIGHTCURVE_SCHEMA`.
LIGHTCURVE_COLUMNS: dict[str, tuple[str, ...]] = {
    f.name: _pandas_dtype(f.type) for f in LIGHTCURVE_SCHEMA
}

#: features.parquet: exactly :data:`astropipe.features.stage.FEATURES_SCHEMA` (float features
#: may be NaN where undefined).
FEATURE_COLUMNS: dict[str, tuple[str, ...]] = {
    f.name: _pandas_dtype(f.type) for f in FEATURES_SCHEMA
}


@dataclass(frozen=True)
class Rule:
    """One expectation of a contract (its GX class and arguments) and its one-line reading."""

    kind: type[gxe.Expectation]
    kwargs: Mapping[str, Any]
    text: str

    @property
    def column(self) -> str | None:
        """The column the rule is about (comma-joined for compound keys), if any."""
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        if "column_list" in self.kwargs:
            return ",".join(self.kwargs["column_list"])
        if "column_A" in self.kwargs:
            return f"{self.kwargs['column_A']},{self.kwargs['column_B']}"
        return None

    def expectation(self, **meta: Any) -> gxe.Expectation:
        """A fresh GX expectation for this rule, with ``meta`` attached."""
        return self.kind(**dict(self.kwargs), meta=dict(meta))


@dataclass(frozen=True)
class Contract:
    """A table's data contract: required columns (→ accepted dtypes) and ordered rules.

    ``key`` names the column that labels a row (a file, a cube step) in failure reports.
    """

    table: str
    columns: Mapping[str, tuple[str, ...]]
    rules: tuple[Rule, ...]
    key: str | None = None


def _fmt(x: float) -> str:
    return f"{x:g}"


def _structure(columns: Mapping[str, tuple[str, ...]]) -> list[Rule]:
    rules = [Rule(gxe.ExpectTableRowCountToBeBetween, {"min_value": 1}, "table has rows")]
    for col in columns:
        rules.append(Rule(gxe.ExpectColumnToExist, {"column": col}, f"column {col} exists"))
    for col, types in columns.items():
        text = f"{col} has dtype {' or '.join(types)}"
        if len(types) == 1:
            rules.append(
                Rule(gxe.ExpectColumnValuesToBeOfType, {"column": col, "type_": types[0]}, text)
            )
        else:
            kwargs = {"column": col, "type_list": list(types)}
            rules.append(Rule(gxe.ExpectColumnValuesToBeInTypeList, kwargs, text))
    return rules


def _completeness(
    table: str, columns: Mapping[str, tuple[str, ...]], thresholds: Mapping[str, float]
) -> list[Rule]:
    unknown = sorted(set(thresholds) - set(columns))
    if unknown:
        raise ConfigError(
            f"validation.tables.{table}.completeness: unknown column(s) {unknown}; "
            f"the contract's columns are {list(columns)}."
        )
    rules = []
    for col in columns:  # contract order, not config order
        if col in thresholds:
            frac = float(thresholds[col])
            rules.append(
                Rule(
                    gxe.ExpectColumnValuesToNotBeNull,
                    {"column": col, "mostly": frac},
                    f"{col} non-null in >= {frac * 100:g}% of rows",
                )
            )
    return rules


def _between(
    col: str,
    lo: float | None,
    hi: float | None,
    *,
    strict_max: bool = False,
    unit: str = "",
) -> Rule:
    kwargs = {"column": col, "min_value": lo, "max_value": hi, "strict_max": strict_max}
    u = f" {unit}" if unit else ""
    if lo is None:
        text = f"{col} <= {_fmt(hi)}{u}" if hi is not None else col
    elif hi is None:
        text = f"{col} >= {_fmt(lo)}{u}"
    else:
        text = f"{col} in [{_fmt(lo)}, {_fmt(hi)}{')' if strict_max else ']'}{u}"
    return Rule(gxe.ExpectColumnValuesToBeBetween, kwargs, text + " (nulls ignored)")


def _sky(ranges: RangesConfig, ra: str = "ra", dec: str = "dec") -> list[Rule]:
    return [
        _between(ra, ranges.ra[0], ranges.ra[1], strict_max=True, unit="deg"),
        _between(dec, ranges.dec[0], ranges.dec[1], unit="deg"),
    ]


def _in_set(col: str, values: Sequence[object]) -> Rule:
    kwargs = {"column": col, "value_set": list(values)}
    return Rule(
        gxe.ExpectColumnValuesToBeInSet, kwargs, f"{col} in {{{', '.join(map(str, values))}}}"
    )


def _by_survey(ranges: RangesConfig, *, mjd: Sequence[str] = ("mjd",)) -> list[Rule]:
    """``survey`` is listed, and each row's ``mjd`` columns and ``band`` are in its survey's
    range and band set (one conditioned expectation per survey and column)."""
    rules = [_in_set("survey", list(ranges.surveys))]
    for name, sr in ranges.surveys.items():
        cond = Column("survey") == name
        for col in mjd:
            kwargs = {
                "column": col,
                "min_value": sr.mjd[0],
                "max_value": sr.mjd[1],
                "row_condition": cond,
            }
            text = (
                f"{col} in [{_fmt(sr.mjd[0])}, {_fmt(sr.mjd[1])}] d where survey is {name}"
                " (nulls ignored)"
            )
            rules.append(Rule(gxe.ExpectColumnValuesToBeBetween, kwargs, text))
        kwargs = {"column": "band", "value_set": list(sr.bands), "row_condition": cond}
        text = f"band in {{{', '.join(sr.bands)}}} where survey is {name}"
        rules.append(Rule(gxe.ExpectColumnValuesToBeInSet, kwargs, text))
    return rules


def _unique(cols: Sequence[str]) -> Rule:
    if len(cols) == 1:
        return Rule(gxe.ExpectColumnValuesToBeUnique, {"column": cols[0]}, f"{cols[0]} is unique")
    kwargs = {"column_list": list(cols)}
    return Rule(gxe.ExpectCompoundColumnsToBeUnique, kwargs, f"({', '.join(cols)}) is unique")


def alerts_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``alerts.parquet`` (one row per alert, from ingest_ztf)."""
    cols = ALERT_COLUMNS
    rules = _structure(cols) + _completeness("alerts", cols, table.completeness)
    rules += [
        # v1.0/v1.1 (2016 pre-survey) packets name the alert by alertId and have no objectId;
        # every later packet must carry an objectId.
        Rule(
            gxe.ExpectColumnValuesToNotBeNull,
            {"column": "objectId", "row_condition": Column("alertId").is_null()},
            "objectId non-null wherever alertId is null (every packet since v1.7)",
        ),
        _unique(["candid"]),
        *_sky(ranges),
        # alerts.parquet has no survey column: every alert is ZTF's
        _between("mjd", *ranges.survey(ALERTS_SURVEY).mjd, unit="d"),
        _between("magpsf", *ranges.mag, unit="mag"),
        _between("sigmapsf", 0.0, None, unit="mag"),
        _between("rb", 0.0, 1.0),
        _between("drb", 0.0, 1.0),
        _in_set("fid", [1, 2, 3]),
        _in_set("band", ranges.survey(ALERTS_SURVEY).bands),
        _in_set("isdiffpos", ["t", "f"]),
    ]
    return Contract("alerts", cols, tuple(rules))


def lightcurves_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``lightcurves.parquet`` (the common light-curve schema)."""
    cols = LIGHTCURVE_COLUMNS
    rules = _structure(cols) + _completeness("lightcurves", cols, table.completeness)
    # flux surveys (TESS/Kepler/K2) fill flux instead of mag
    detections = (Column("is_upper_limit") == False) & Column("flux").is_null()  # noqa: E712
    rules += [
        Rule(
            gxe.ExpectColumnValuesToNotBeNull,
            {"column": "mag", "row_condition": detections},
            "mag non-null on every detection without a flux (is_upper_limit false, flux null)",
        ),
        _unique(list(LIGHTCURVE_KEY)),
        *_sky(ranges),
        _between("mag", *ranges.mag, unit="mag"),
        _between("limiting_mag", *ranges.limiting_mag, unit="mag"),
        _between("mag_err", 0.0, None, unit="mag"),
        _between("flux_err", 0.0, None),
        *_by_survey(ranges),
    ]
    return Contract("lightcurves", cols, tuple(rules))


def features_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``features.parquet`` (one row per object and band; magnitude groups have
    ``mag_peak``, flux groups ``flux_peak``)."""
    cols = FEATURE_COLUMNS
    rules = _structure(cols) + _completeness("features", cols, table.completeness)
    magnitudes = Column("mag_peak").is_not_null()
    rules += [
        _unique(["object_id", "band"]),
        _between("n_obs", 1, None),
        _between("time_span", 0.0, None, unit="d"),
        *(
            Rule(
                gxe.ExpectColumnValuesToBeBetween,
                {
                    "column": c,
                    "min_value": ranges.mag[0],
                    "max_value": ranges.mag[1],
                    "row_condition": magnitudes,
                },
                f"{c} in [{_fmt(ranges.mag[0])}, {_fmt(ranges.mag[1])}] mag where mag_peak is set"
                " (magnitude groups; nulls ignored)",
            )
            for c in ("mean", "median")
        ),
        _between("std", 0.0, None, unit="mag"),
        _between("amplitude", 0.0, None, unit="mag"),
        _between("mad", 0.0, None, unit="mag"),
        _between("rise_time", 0.0, None, unit="d"),
        _between("decay_time", 0.0, None, unit="d"),
        _between("beyond_1_std", 0.0, 1.0),
        _between("beyond_2_std", 0.0, 1.0),
        _between("stetson_k", 0.0, 1.0),
        _between("eta", 0.0, None),
        _between("linear_fit_slope_sigma", 0.0, None),
        _between("linear_fit_reduced_chi2", 0.0, None),
        _between("ls_period", 0.0, None, unit="d"),
        _between("ls_power", 0.0, 1.0),
        _between("ls_fap", 0.0, 1.0),
        _between("cdpp", 0.0, None, unit="ppm"),
        *_by_survey(ranges, mjd=("mjd_first", "mjd_last")),
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
