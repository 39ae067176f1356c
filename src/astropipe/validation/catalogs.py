"""Data contracts of the ingest_catalogs tables: KOI, TOI, K2 candidates and ``objects``.

Each catalog contract names the columns the rest of the pipeline relies on, with their dtypes
taken from the declared schema (:mod:`astropipe.catalogs.schemas`, so the two cannot drift),
and checks: the entry id unique (no duplicate KOI/TOI/planet names), the target number
positive, the orbital period and the planet radius strictly positive, ``ra`` in [0, 360) and
``dec`` in [-90, 90], the disposition among the archive's values, and completeness as
configured in ``validation.tables.<table>.completeness``. Range rules ignore nulls (a TOI
without a radius yet); completeness rules are where nulls count.

The ``objects`` contract checks the link table: one row per (catalog, entry, light-curve
object), catalog and id kind among the known ones, target numbers and row counts >= 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import great_expectations.expectations as gxe

from astropipe.catalogs.link import OBJECTS_SCHEMA
from astropipe.catalogs.schemas import CATALOGS, K2, KOI, TOI, CatalogSpec
from astropipe.validation.config import RangesConfig, TableConfig
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
    "KOI_COLUMNS",
    "TOI_COLUMNS",
    "K2_COLUMNS",
    "OBJECTS_COLUMNS",
    "koi_contract",
    "toi_contract",
    "k2_contract",
    "objects_contract",
    "CATALOG_BUILDERS",
]

#: Archive dispositions (the archive's column documentation).
KOI_DISPOSITIONS = ["CANDIDATE", "CONFIRMED", "FALSE POSITIVE", "NOT DISPOSITIONED"]
K2_DISPOSITIONS = ["CANDIDATE", "CONFIRMED", "FALSE POSITIVE", "REFUTED"]
TOI_DISPOSITIONS = ["APC", "CP", "FA", "FP", "KP", "PC"]  # TFOPWG: ambiguous PC, confirmed, …


def _columns(spec: CatalogSpec, names: list[str]) -> dict[str, tuple[str, ...]]:
    return {n: pandas_dtype(spec.column(n).type) for n in names}


KOI_COLUMNS = _columns(
    KOI, ["kepid", "kepoi_name", "koi_disposition", "koi_period", "koi_prad", "ra", "dec"]
)
TOI_COLUMNS = _columns(
    TOI, ["toi", "tid", "tfopwg_disp", "pl_orbper", "pl_rade", "rastr", "ra", "decstr", "dec"]
)
K2_COLUMNS = _columns(K2, ["pl_name", "epic", "disposition", "pl_orbper", "pl_rade", "ra", "dec"])
OBJECTS_COLUMNS = {f.name: pandas_dtype(f.type) for f in OBJECTS_SCHEMA if not f.name == "seasons"}


def _positive(col: str, unit: str) -> Rule:
    kwargs = {"column": col, "min_value": 0.0, "strict_min": True}
    return Rule(gxe.ExpectColumnValuesToBeBetween, kwargs, f"{col} > 0 {unit} (nulls ignored)")


def _catalog(
    name: str,
    spec: CatalogSpec,
    columns: Mapping[str, tuple[str, ...]],
    table: TableConfig,
    ranges: RangesConfig,
    *,
    period: str,
    radius: str,
    disposition: str,
    dispositions: list[str],
) -> list[Rule]:
    rules = structure(columns) + completeness(name, columns, table.completeness)
    rules += [
        unique([spec.id_column]),
        between(spec.target_column, 1, None),
        _positive(period, "d"),
        _positive(radius, "R_earth"),
        *sky(ranges),
        in_set(disposition, dispositions),
    ]
    return rules


def koi_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``koi.parquet`` (the KOI cumulative table)."""
    rules = _catalog("koi", KOI, KOI_COLUMNS, table, ranges, period="koi_period",
                     radius="koi_prad", disposition="koi_disposition",
                     dispositions=KOI_DISPOSITIONS)  # fmt: skip
    return Contract("koi", KOI_COLUMNS, tuple(rules), key="kepoi_name")


def toi_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``toi.parquet`` (TESS Objects of Interest)."""
    rules = _catalog("toi", TOI, TOI_COLUMNS, table, ranges, period="pl_orbper",
                     radius="pl_rade", disposition="tfopwg_disp",
                     dispositions=TOI_DISPOSITIONS)  # fmt: skip
    rules.append(
        Rule(
            gxe.ExpectColumnValuesToMatchRegex,
            {"column": "toi", "regex": r"^[0-9]+\.[0-9]{2}$"},
            "toi is <star>.<two-digit planet> (e.g. 216.01), kept as written",
        )
    )
    return Contract("toi", TOI_COLUMNS, tuple(rules), key="toi")


def k2_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``k2.parquet`` (K2 planets and candidates, live mode only)."""
    rules = _catalog("k2", K2, K2_COLUMNS, table, ranges, period="pl_orbper", radius="pl_rade",
                     disposition="disposition", dispositions=K2_DISPOSITIONS)  # fmt: skip
    return Contract("k2", K2_COLUMNS, tuple(rules), key="pl_name")


def objects_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``objects.parquet`` (catalog entries ↔ light-curve objects)."""
    del ranges
    cols = OBJECTS_COLUMNS
    rules = structure(cols) + completeness("objects", cols, table.completeness)
    rules += [
        unique(["catalog", "catalog_id", "object_id"]),
        in_set("catalog", list(CATALOGS)),
        in_set("id_kind", sorted({s.id_kind for s in CATALOGS.values()})),
        in_set("mission", sorted({s.mission for s in CATALOGS.values()})),
        between("target_id", 1, None),
        between("lightcurve_rows", 1, None),
    ]
    return Contract("objects", cols, tuple(rules))


#: Table name → contract builder (joined into :func:`astropipe.validation.suites.contract_for`).
CATALOG_BUILDERS = {
    "koi": koi_contract,
    "toi": toi_contract,
    "k2": k2_contract,
    "objects": objects_contract,
}
