"""Exoplanet catalogs from the NASA Exoplanet Archive: KOI (cumulative), TOI and K2 candidates.

The ingest_catalogs stage (:mod:`astropipe.catalogs.stage`) reads the archive's CSV — the
sample snapshots in ``data/sample/catalogs`` or its TAP service — into one typed Parquet
table per catalog, and links catalog entries to ingested light curves in ``objects.parquet``;
see docs/ingest_catalogs.md.
"""

from astropipe.catalogs.archive_csv import ParsedCatalog, natural_key, parse_archive_csv
from astropipe.catalogs.config import CatalogsConfig
from astropipe.catalogs.link import OBJECTS_SCHEMA, build_objects, lightcurve_targets
from astropipe.catalogs.schemas import CATALOGS, K2, KOI, TOI, CatalogSpec, Column

__all__ = [
    "CATALOGS",
    "KOI",
    "TOI",
    "K2",
    "CatalogSpec",
    "Column",
    "CatalogsConfig",
    "ParsedCatalog",
    "parse_archive_csv",
    "natural_key",
    "OBJECTS_SCHEMA",
    "lightcurve_targets",
    "build_objects",
]
