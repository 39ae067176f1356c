"""Typed schema of the ``mast`` config group (conf/mast/default.yaml).

:class:`MastClientConfig` (the endpoint, paging, retries, timeouts, token variables) is also
what ingest_tess's live mode connects with: it reads ``mast.client`` so both stages speak to
MAST one way. :class:`MastQuery` and :class:`ProductFilter` describe a CAOM query and which of
its products to keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from astropipe.configtypes import (
    Declination,
    NonEmptyList,
    NonNegativeFloat,
    NonNegativeInt,
    Pair,
    PositiveFloat,
    PositiveInt,
    PositivePair,
    RightAscension,
    from_mapping,
)
from astropipe.errors import ConfigError

__all__ = [
    "MastClientConfig",
    "MastQuery",
    "ProductFilter",
    "MastSampleConfig",
    "MastOutputs",
    "MastConfig",
]


@dataclass(frozen=True)
class MastClientConfig:
    """How to talk to the MAST Portal API (``invoke``) and its download endpoint."""

    url: str = "https://mast.stsci.edu/api/v0/invoke"
    download_url: str = "https://mast.stsci.edu/api/v0.1/Download/file"
    pagesize: PositiveInt = 5000
    products_batch: PositiveInt = 100
    timeout: PositivePair = field(default_factory=lambda: [5.0, 120.0])
    retries: NonNegativeInt = 4
    backoff_factor: NonNegativeFloat = 0.5
    max_retry_after: NonNegativeFloat = 60.0
    deadline: PositiveFloat | None = 600.0
    poll_interval: NonNegativeFloat = 2.0
    max_polls: PositiveInt = 30
    token_env: list[str] = field(default_factory=lambda: ["MAST_API_TOKEN", "TESS_API_TOKEN"])

    def validate(self, where: str = "mast.client") -> MastClientConfig:
        """Check the URLs; return self."""
        for name in ("url", "download_url"):
            value = getattr(self, name)
            if not value.startswith(("http://", "https://")):
                raise ConfigError(
                    f"{where}.{name}: {value!r} is not an http(s) URL; use the MAST default "
                    "(https://mast.stsci.edu/...)."
                )
        return self


@dataclass(frozen=True)
class MastQuery:
    """A bounded CAOM observation query (``Mast.Caom.Filtered`` or ``.Position``).

    Lists are OR-ed values of one CAOM field; ``[]`` leaves the field unconstrained. ``t_min``
    and ``t_max`` are ``[lo, hi]`` MJD ranges of the observation start and end. A cone
    (``ra``, ``dec``, ``radius`` in degrees) switches to ``Mast.Caom.Filtered.Position``.
    ``limit`` keeps the first N observations after the deterministic sort.
    """

    target_name: list[str] = field(default_factory=lambda: ["261136679"])  # pi Men (TIC)
    obs_collection: list[str] = field(default_factory=lambda: ["TESS"])
    dataproduct_type: list[str] = field(default_factory=lambda: ["timeseries"])
    sequence_number: list[NonNegativeInt] = field(default_factory=list)
    t_min: Pair | None = None
    t_max: Pair | None = None
    ra: RightAscension | None = None
    dec: Declination | None = None
    radius: PositiveFloat | None = None
    limit: PositiveInt | None = None

    def validate(self, where: str = "mast.query") -> MastQuery:
        """Check that the query is bounded and well formed; return self."""
        cone = (self.ra, self.dec, self.radius)
        if any(v is not None for v in cone) and not all(v is not None for v in cone):
            raise ConfigError(f"{where}: give all of ra, dec and radius for a cone, or none.")
        if self.ra is None and not (self.target_name or self.sequence_number):
            raise ConfigError(
                f"{where}: the query is unbounded (every TESS light curve); set target_name "
                "(e.g. ['261136679'] for TIC 261136679), sectors/sequence_number, or a cone "
                "ra/dec/radius."
            )
        if self.radius is not None and self.radius > 1.0:
            raise ConfigError(
                f"{where}.radius: {self.radius} deg is larger than 1 deg; MAST cone queries "
                "that wide return too much; use a smaller radius."
            )
        for name in ("t_min", "t_max"):
            pair = getattr(self, name)
            if pair is not None and not pair[0] <= pair[1]:
                raise ConfigError(
                    f"{where}.{name}: expected [lo, hi] MJD with lo <= hi, found {pair}."
                )
        return self


@dataclass(frozen=True)
class ProductFilter:
    """Which products of the observations to keep (``[]``: no constraint on that attribute).

    ``subgroups`` are ``productSubGroupDescription`` values (``LC``: light curves), ``types``
    are ``productType`` values (``SCIENCE``), ``suffixes`` are ``productFilename`` endings
    (``_lc.fits``). A product is kept when it passes every non-empty constraint.
    """

    subgroups: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    suffixes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MastSampleConfig:
    """Recorded ``invoke`` answers read in sample mode."""

    observations: NonEmptyList = field(
        default_factory=lambda: [
            "data/sample/mast/advSearch.json",
            "data/sample/mast/advSearchPos.json",
        ]
    )
    products: list[str] = field(default_factory=lambda: ["data/sample/mast/products.json"])


@dataclass(frozen=True)
class MastOutputs:
    """Where ingest_mast writes."""

    dir: str = "data/raw/mast"
    observations: str = "data/raw/mast/observations.parquet"
    products: str = "data/raw/mast/products.parquet"
    report: str = "reports/ingest_mast.json"
    metrics: str = "reports/metrics/ingest_mast.json"


@dataclass(frozen=True)
class MastConfig:
    """The ``mast`` section of params.yaml."""

    source: Literal["sample", "live"] = "sample"
    sample: MastSampleConfig = field(default_factory=MastSampleConfig)
    query: MastQuery = field(default_factory=MastQuery)
    products: ProductFilter = field(default_factory=ProductFilter)
    client: MastClientConfig = field(default_factory=MastClientConfig)
    outputs: MastOutputs = field(default_factory=MastOutputs)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MastConfig:
        """Build from the full params mapping and check the live query when it is used."""
        if "mast" not in params:
            raise ConfigError(
                "params: no `mast` section; run `make params` to compose params.yaml."
            )
        cfg = from_mapping(cls, params["mast"], where="mast")
        cfg.client.validate()
        if cfg.source == "live":
            cfg.query.validate()
        return cfg
