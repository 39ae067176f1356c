"""Typed schema of the ``catalogs`` config group (conf/catalogs/default.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from astropipe.configtypes import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositivePair,
    from_mapping,
)
from astropipe.errors import ConfigError

__all__ = [
    "CATALOG_NAMES",
    "SampleFiles",
    "TapConfig",
    "Freshness",
    "LinkConfig",
    "CatalogsOutputs",
    "CatalogsConfig",
]

#: The catalogs this stage knows, in ingest order.
CATALOG_NAMES = ("koi", "toi", "k2")
CatalogName = Literal["koi", "toi", "k2"]

#: The archive's TAP queries: ``{columns}`` is replaced by the declared columns of the
#: catalog (astropipe.catalogs.schemas), so the query and the schema cannot drift.
DEFAULT_QUERIES = {
    "koi": "select {columns} from cumulative",
    "toi": "select {columns} from toi",
    "k2": "select {columns} from k2pandc where default_flag = 1",
}


@dataclass(frozen=True)
class SampleFiles:
    """The archive CSV snapshots read in sample mode (null: no sample for that catalog)."""

    koi: str | None = "data/sample/catalogs/koi_cumulative.csv"
    toi: str | None = "data/sample/catalogs/toi.csv"
    k2: str | None = None


@dataclass(frozen=True)
class TapConfig:
    """The archive's TAP ``sync`` service and the query per catalog."""

    url: str = "https://exoplanetarchive.ipac.caltech.edu/TAP/sync"
    queries: dict[CatalogName, str] = field(default_factory=lambda: dict(DEFAULT_QUERIES))
    timeout: PositivePair = field(default_factory=lambda: [10.0, 300.0])
    retries: NonNegativeInt = 4
    backoff_factor: NonNegativeFloat = 1.0
    max_retry_after: NonNegativeFloat = 60.0
    deadline: PositiveFloat | None = 900.0

    def validate(self) -> TapConfig:
        """Check the URL and that every query names its table; return self."""
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"catalogs.tap.url: {self.url!r} is not an http(s) URL; use "
                "https://exoplanetarchive.ipac.caltech.edu/TAP/sync."
            )
        for name, query in self.queries.items():
            if not query.strip().lower().startswith("select"):
                raise ConfigError(
                    f"catalogs.tap.queries.{name}: {query!r} is not an ADQL select; write e.g. "
                    f"{DEFAULT_QUERIES[name]!r}."
                )
        return self


@dataclass(frozen=True)
class Freshness:
    """Hours a fetched live answer stays fresh; a live run re-fetches only older ones."""

    koi: PositiveFloat = 24.0
    toi: PositiveFloat = 12.0
    k2: PositiveFloat = 24.0


@dataclass(frozen=True)
class LinkConfig:
    """The light-curve tables the ``objects`` table links catalog entries to."""

    lightcurves: list[str] = field(default_factory=lambda: ["data/raw/tess/lightcurves.parquet"])


@dataclass(frozen=True)
class CatalogsOutputs:
    """Where ingest_catalogs writes (every table under ``dir``, one DVC output)."""

    dir: str = "data/raw/catalogs"
    koi: str = "data/raw/catalogs/koi.parquet"
    toi: str = "data/raw/catalogs/toi.parquet"
    k2: str = "data/raw/catalogs/k2.parquet"
    objects: str = "data/raw/catalogs/objects.parquet"
    report: str = "reports/ingest_catalogs.json"
    metrics: str = "reports/metrics/ingest_catalogs.json"


@dataclass(frozen=True)
class CatalogsConfig:
    """The ``catalogs`` section of params.yaml."""

    source: Literal["sample", "live"] = "sample"
    on_error: Literal["quarantine", "fail"] = "quarantine"
    catalogs: list[CatalogName] = field(default_factory=lambda: list(CATALOG_NAMES))
    sample: SampleFiles = field(default_factory=SampleFiles)
    tap: TapConfig = field(default_factory=TapConfig)
    freshness: Freshness = field(default_factory=Freshness)
    cache_dir: str = "data/cache/catalogs"
    link: LinkConfig = field(default_factory=LinkConfig)
    outputs: CatalogsOutputs = field(default_factory=CatalogsOutputs)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CatalogsConfig:
        """Build from the full params mapping and check the relations between keys."""
        if "catalogs" not in params:
            raise ConfigError(
                "params: no `catalogs` section; run `make params` to compose params.yaml."
            )
        cfg = from_mapping(cls, params["catalogs"], where="catalogs")
        if not cfg.catalogs or len(set(cfg.catalogs)) != len(cfg.catalogs):
            raise ConfigError(
                f"catalogs.catalogs: {cfg.catalogs} must name each of {list(CATALOG_NAMES)} "
                "at most once, and at least one."
            )
        cfg.tap.validate()
        if cfg.source == "live":
            missing = [c for c in cfg.catalogs if c not in cfg.tap.queries]
            if missing:
                raise ConfigError(
                    f"catalogs.tap.queries: no query for {missing}; add one (e.g. "
                    f"{DEFAULT_QUERIES[missing[0]]!r}) or drop it from catalogs.catalogs."
                )
        return cfg
