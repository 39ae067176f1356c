"""The ``objects`` table: which catalog entries have ingested light curves.

One row per (catalog entry, light-curve object) pair whose target numbers agree, within the
catalogue both use:

| catalog | its target column | light-curve ``mission`` | light-curve ``object_id`` |
|---|---|---|---|
| TOI (``toi``) | ``tid`` (TIC) | TESS | ``TIC 55652896`` |
| KOI (``koi``) | ``kepid`` (KIC) | Kepler | ``KIC 11442793`` |
| K2 (``k2``) | ``epic`` (EPIC) | K2 | ``EPIC 211436265`` |

The light-curve side is read from the common light-curve schema (``mission`` plus
``target_id``, or the number in ``object_id``, ``TIC 55652896`` or ``55652896``), so any
table ingest_tess writes links without code changes. Only these identity matches are made:
no positional cross-match, and no cross-catalogue ids (a KOI host observed by TESS links to
its Kepler light curves only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from astropipe.catalogs.archive_csv import natural_key
from astropipe.catalogs.schemas import CATALOGS
from astropipe.errors import InputFileError

__all__ = [
    "OBJECTS_SCHEMA",
    "OBJECTS_UNITS",
    "KIND_OF_MISSION",
    "lightcurve_targets",
    "build_objects",
]

#: The objects table: one row per linked (catalog entry, light-curve object).
OBJECTS_SCHEMA = pa.schema(
    [
        pa.field("catalog", pa.string(), nullable=False),  # koi | toi | k2
        pa.field("catalog_id", pa.string(), nullable=False),  # kepoi_name | toi | pl_name
        pa.field("id_kind", pa.string(), nullable=False),  # KIC | TIC | EPIC
        pa.field("target_id", pa.int64(), nullable=False),  # the KIC/TIC/EPIC number
        pa.field("object_id", pa.string(), nullable=False),  # as in the light-curve table
        pa.field("mission", pa.string(), nullable=False),  # Kepler | TESS | K2
        pa.field("lightcurve_rows", pa.int64(), nullable=False),  # points of that object
        pa.field("seasons", pa.list_(pa.int32()), nullable=False),  # sectors/quarters/campaigns
    ]
)
OBJECTS_UNITS: dict[str, str] = {}

#: Light-curve mission → the catalogue its target numbers belong to.
KIND_OF_MISSION = {spec.mission: spec.id_kind for spec in CATALOGS.values()}

_OBJECT_ID = re.compile(r"^\s*(?:(TIC|KIC|EPIC)\s*)?(\d+)\s*$", re.I)
_SEASONS = ("sector", "quarter", "campaign")


def lightcurve_targets(table: pa.Table, *, where: str = "light curves") -> pd.DataFrame:
    """One row per light-curve object: mission, target_id, object_id, rows, seasons.

    Raises
    ------
    InputFileError
        The table has no ``mission`` column, or neither ``target_id`` nor a numeric
        ``object_id``.
    """
    names = set(table.column_names)
    if "mission" not in names or not ({"target_id", "object_id"} & names):
        raise InputFileError(
            f"{where}: not a TESS/Kepler light-curve table (needs mission and target_id or "
            f"object_id; has {sorted(names)}); point catalogs.link.lightcurves at "
            "ingest_tess's lightcurves.parquet."
        )
    cols = [c for c in ("mission", "target_id", "object_id", *_SEASONS) if c in names]
    df = table.select(cols).to_pandas()
    if "object_id" not in df:
        df["object_id"] = df["target_id"].astype("int64").astype(str)
    if "target_id" not in df:
        df["target_id"] = df["object_id"].map(_number)
    df = df[df["mission"].isin(list(KIND_OF_MISSION))]
    if df["target_id"].isna().any():
        bad = df.loc[df["target_id"].isna(), "object_id"].iloc[0]
        raise InputFileError(
            f"{where}: object_id {bad!r} has no TIC/KIC/EPIC number; expected e.g. "
            "'TIC 55652896' or '55652896'."
        )
    season = pd.Series(pd.NA, index=df.index, dtype="Int64")
    for col in _SEASONS:
        if col in df:
            season = season.fillna(df[col].astype("Int64"))
    df = df.assign(target_id=df["target_id"].astype("int64"), season=season)
    rows = []
    for (mission, target, obj), group in df.groupby(
        ["mission", "target_id", "object_id"], sort=True
    ):
        seasons = sorted({int(s) for s in group["season"].dropna()})
        rows.append(
            {
                "mission": mission,
                "id_kind": KIND_OF_MISSION[mission],
                "target_id": int(target),
                "object_id": obj,
                "lightcurve_rows": len(group),
                "seasons": seasons,
            }
        )
    columns = ["mission", "id_kind", "target_id", "object_id", "lightcurve_rows", "seasons"]
    return pd.DataFrame(rows, columns=columns)


def _number(object_id: Any) -> int | None:
    m = _OBJECT_ID.match(str(object_id)) if object_id is not None else None
    return int(m.group(2)) if m else None


def build_objects(
    catalogs: Mapping[str, pa.Table], targets: pd.DataFrame
) -> tuple[pa.Table, dict[str, Any]]:
    """Link the catalogs' entries to the light-curve objects in ``targets``.

    Parameters
    ----------
    catalogs
        Catalog name (``koi``, ``toi``, ``k2``) → its table (as ingested).
    targets
        :func:`lightcurve_targets` of every light-curve table (concatenated).

    Returns
    -------
    tuple
        The objects table (:data:`OBJECTS_SCHEMA`, sorted by catalog, natural catalog id and
        object id) and the link statistics: entries linked per catalog, light-curve objects
        linked and not linked per catalogue (with their object ids), and for unlinked ones
        whether their catalog was ingested at all.
    """
    rows: list[dict[str, Any]] = []
    linked_objects: set[str] = set()
    stats: dict[str, Any] = {"linked_entries": {}, "linked_targets": {}}
    for name, spec in CATALOGS.items():
        if name not in catalogs:
            continue
        cat = catalogs[name].select([spec.id_column, spec.target_column]).to_pandas()
        lc = targets[targets["mission"] == spec.mission] if len(targets) else targets
        merged = cat.merge(lc, left_on=spec.target_column, right_on="target_id", how="inner")
        for rec in merged.to_dict("records"):
            rows.append(
                {
                    "catalog": name,
                    "catalog_id": rec[spec.id_column],
                    "id_kind": spec.id_kind,
                    "target_id": int(rec["target_id"]),
                    "object_id": rec["object_id"],
                    "mission": rec["mission"],
                    "lightcurve_rows": int(rec["lightcurve_rows"]),
                    "seasons": list(rec["seasons"]),
                }
            )
            linked_objects.add(rec["object_id"])
        stats["linked_entries"][name] = int(merged[spec.id_column].nunique())
        stats["linked_targets"][name] = int(merged["target_id"].nunique())
    order = {name: i for i, name in enumerate(CATALOGS)}
    rows.sort(key=lambda r: (order[r["catalog"]], natural_key(r["catalog_id"]), r["object_id"]))
    table = pa.Table.from_pylist(rows, schema=OBJECTS_SCHEMA)
    unlinked = targets[~targets["object_id"].isin(linked_objects)] if len(targets) else targets
    stats["lightcurve_objects"] = len(targets)
    stats["lightcurve_objects_linked"] = len(linked_objects)
    stats["lightcurve_objects_unlinked"] = {
        spec.id_kind: {
            "catalog_ingested": name in catalogs,
            "object_ids": sorted(
                unlinked.loc[unlinked["mission"] == spec.mission, "object_id"], key=natural_key
            )
            if len(unlinked)
            else [],
        }
        for name, spec in CATALOGS.items()
    }
    return table, stats
