"""Rule builders for data contracts: the bricks every contract module uses.

A :class:`Rule` is one great-expectations expectation (its class and arguments) with a
one-line human reading; a :class:`Contract` is a table's required columns (→ accepted pandas
dtypes), its ordered rules and the column that labels a row in failure reports. The builders
here return rules for the common checks — structure and dtypes, completeness, ranges, sets,
uniqueness, sky coordinates, per-survey ranges — with their readings written the same way in
every contract (:mod:`~astropipe.validation.suites` for the ZTF tables,
:mod:`~astropipe.validation.tess`, :mod:`~astropipe.validation.catalogs`,
:mod:`~astropipe.validation.mast`, :mod:`~astropipe.validation.frames`,
:mod:`~astropipe.validation.cubes`).

Example
-------
>>> rule = between("mjd", 58000.0, None, unit="d")
>>> rule.text, rule.column
('mjd >= 58000 d (nulls ignored)', 'mjd')
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations.expectations as gxe  # noqa: E402  (after the telemetry switch)
import pyarrow as pa  # noqa: E402
from great_expectations.expectations.row_conditions import Column  # noqa: E402

from astropipe.errors import ConfigError  # noqa: E402
from astropipe.validation.config import RangesConfig  # noqa: E402

__all__ = [
    "INT",
    "FLOAT",
    "STR",
    "Rule",
    "Contract",
    "fmt",
    "pandas_dtype",
    "structure",
    "completeness",
    "between",
    "sky",
    "in_set",
    "by_survey",
    "unique",
]

#: Accepted pandas dtypes of an integer column written narrower by some producers.
INT = ("int64", "int32")
#: ... and of a float column.
FLOAT = ("float64", "float32")
# pandas >= 3 reads Arrow strings as its "str" dtype; GX matches it with type_="str".
STR = ("str",)


def pandas_dtype(t: pa.DataType) -> tuple[str, ...]:
    """The pandas dtype names a column of Arrow type ``t`` reads as (strings: :data:`STR`)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return STR
    if pa.types.is_boolean(t):
        return ("bool",)
    return (t.to_pandas_dtype().__name__,)


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


def fmt(x: float) -> str:
    """A number as the rules' readings write it (``%g``: ``58000``, ``0.5``, ``1e+06``)."""
    return f"{x:g}"


def structure(columns: Mapping[str, tuple[str, ...]]) -> list[Rule]:
    """The table has rows, every column of ``columns`` exists and has one of its dtypes.

    Parameters
    ----------
    columns
        Column name → accepted pandas dtype names (one: ``ExpectColumnValuesToBeOfType``;
        several: ``ExpectColumnValuesToBeInTypeList``).

    Returns
    -------
    list of Rule
        The row-count rule, then one existence rule per column, then one dtype rule per
        column, in ``columns`` order.
    """
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


def completeness(
    table: str, columns: Mapping[str, tuple[str, ...]], thresholds: Mapping[str, float]
) -> list[Rule]:
    """Non-null fractions: each column of ``thresholds`` non-null in at least that fraction.

    Parameters
    ----------
    table
        The table's name under ``validation.tables`` (for the error message).
    columns
        The contract's columns; the rules follow their order, not the configuration's.
    thresholds
        Column → minimum non-null fraction in [0, 1].

    Raises
    ------
    ConfigError
        A threshold names a column the contract does not have.
    """
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


def between(
    col: str,
    lo: float | None,
    hi: float | None,
    *,
    strict_max: bool = False,
    unit: str = "",
) -> Rule:
    """``col`` in ``[lo, hi]`` (``hi`` excluded if ``strict_max``; None: unbounded), nulls ignored.

    ``unit`` only goes into the rule's reading, e.g. ``"mjd in [58000, 61000] d (nulls
    ignored)"``.
    """
    kwargs = {"column": col, "min_value": lo, "max_value": hi, "strict_max": strict_max}
    u = f" {unit}" if unit else ""
    if lo is None:
        text = f"{col} <= {fmt(hi)}{u}" if hi is not None else col
    elif hi is None:
        text = f"{col} >= {fmt(lo)}{u}"
    else:
        text = f"{col} in [{fmt(lo)}, {fmt(hi)}{')' if strict_max else ']'}{u}"
    return Rule(gxe.ExpectColumnValuesToBeBetween, kwargs, text + " (nulls ignored)")


def sky(ranges: RangesConfig, ra: str = "ra", dec: str = "dec") -> list[Rule]:
    """``ra`` in ``[ra_min, ra_max)`` and ``dec`` in ``[dec_min, dec_max]`` degrees
    (``validation.ranges``), nulls ignored."""
    return [
        between(ra, ranges.ra[0], ranges.ra[1], strict_max=True, unit="deg"),
        between(dec, ranges.dec[0], ranges.dec[1], unit="deg"),
    ]


def in_set(col: str, values: Sequence[object]) -> Rule:
    """Every non-null value of ``col`` is one of ``values``."""
    kwargs = {"column": col, "value_set": list(values)}
    return Rule(
        gxe.ExpectColumnValuesToBeInSet, kwargs, f"{col} in {{{', '.join(map(str, values))}}}"
    )


def by_survey(ranges: RangesConfig, *, mjd: Sequence[str] = ("mjd",)) -> list[Rule]:
    """``survey`` is listed, and each row's ``mjd`` columns and ``band`` are in its survey's
    range and band set (one conditioned expectation per survey and column)."""
    rules = [in_set("survey", list(ranges.surveys))]
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
                f"{col} in [{fmt(sr.mjd[0])}, {fmt(sr.mjd[1])}] d where survey is {name}"
                " (nulls ignored)"
            )
            rules.append(Rule(gxe.ExpectColumnValuesToBeBetween, kwargs, text))
        kwargs = {"column": "band", "value_set": list(sr.bands), "row_condition": cond}
        text = f"band in {{{', '.join(sr.bands)}}} where survey is {name}"
        rules.append(Rule(gxe.ExpectColumnValuesToBeInSet, kwargs, text))
    return rules


def unique(cols: Sequence[str]) -> Rule:
    """``cols`` (one column, or a compound key) is unique over the table."""
    if len(cols) == 1:
        return Rule(gxe.ExpectColumnValuesToBeUnique, {"column": cols[0]}, f"{cols[0]} is unique")
    kwargs = {"column_list": list(cols)}
    return Rule(gxe.ExpectCompoundColumnsToBeUnique, kwargs, f"({', '.join(cols)}) is unique")
