"""Typed schema of the ``ztf`` config group (conf/ztf/default.yaml)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from astropipe.configtypes import (
    Declination,
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

#: Largest cone radius (deg) the IRSA ZTF light-curve service accepts (10 arcmin).
IRSA_MAX_RADIUS_DEG = 0.1667

__all__ = ["AlertsConfig", "DrConfig", "IrsaConfig", "ZtfOutputs", "ZtfConfig"]


@dataclass(frozen=True)
class AlertsConfig:
    """Alert packets: a directory of ``.avro`` files or a night tarball, or archive nights.

    When ``nights`` is non-empty, the nights are fetched from ``archive_url`` into
    ``cache_dir`` (see :mod:`astropipe.ztf.archive`) and read instead of ``path``.
    """

    path: str = "data/sample/ztf/alerts"
    cutouts: bool = True
    jpeg_cutouts: Literal["skip", "keep"] = "skip"
    archive_url: str = "https://ztf.uw.edu/alerts/public"
    nights: list[str] = field(default_factory=list)
    cache_dir: str = "data/cache/ztf_archive"
    max_member_bytes: PositiveInt = 64 * 1024 * 1024
    batch_size: PositiveInt = 256
    dc_magnitudes: bool = False
    dc_max_distnr: PositiveFloat = 1.4

    def validate(self) -> AlertsConfig:
        """Check that every night is a quoted ``YYYYMMDD`` calendar date, listed once."""
        bad = []
        for night in self.nights:
            try:
                ok = isinstance(night, str) and len(night) == 8 and night.isdigit()
                ok = ok and _dt.datetime.strptime(night, "%Y%m%d").year >= 2018
            except ValueError:
                ok = False
            if not ok:
                bad.append(night)
        dupes = sorted({n for n in self.nights if self.nights.count(n) > 1}, key=str)
        if bad or dupes:
            problems = []
            if bad:
                problems.append(f"not a quoted YYYYMMDD date from 2018 on: {bad}")
            if dupes:
                problems.append(f"listed more than once: {dupes}")
            raise ConfigError(
                f"ztf.alerts.nights: {'; '.join(problems)}; write each night once as a "
                "quoted string, e.g. nights: ['20240701']."
            )
        if self.nights and not self.archive_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"ztf.alerts.archive_url: {self.archive_url!r} is not an http(s) URL; "
                "use https://ztf.uw.edu/alerts/public."
            )
        return self


@dataclass(frozen=True)
class DrConfig:
    """IRSA data-release bulk Parquet files (one row per object and filter)."""

    path: str | None = "data/sample/ztf/irsa"
    bad_catflags_mask: NonNegativeInt = 32768


@dataclass(frozen=True)
class IrsaConfig:
    """The IRSA ``nph_light_curves`` query, bounded so it defines a reproducible snapshot."""

    url: str = "https://irsa.ipac.caltech.edu/cgi-bin/ZTF/nph_light_curves"
    ids: list[NonNegativeInt] = field(default_factory=list)
    ra: RightAscension | None = None
    dec: Declination | None = None
    radius: PositiveFloat | None = None
    filters: list[Literal["zg", "zr", "zi"]] = field(default_factory=lambda: ["zg", "zr", "zi"])
    mjd_range: Pair | None = None
    limit: PositiveInt | None = None
    timeout: PositivePair = field(default_factory=lambda: [5.0, 60.0])
    retries: NonNegativeInt = 4
    backoff_factor: NonNegativeFloat = 0.5
    max_retry_after: NonNegativeFloat = 60.0
    deadline: PositiveFloat | None = 600.0
    token_env: str = "ZTF_API_TOKEN"
    bad_catflags_mask: NonNegativeInt = 32768

    def validate(self) -> IrsaConfig:
        """Check that the query is bounded and well formed; return self."""
        cone = (self.ra, self.dec, self.radius)
        if any(v is not None for v in cone) and not all(v is not None for v in cone):
            raise ConfigError("ztf.irsa: give all of ra, dec and radius for a cone, or none.")
        if self.ra is None and not self.ids:
            raise ConfigError(
                "ztf.irsa: the query is unbounded; set ztf.irsa.ids=[...] or "
                "ztf.irsa.ra/dec/radius for a cone search."
            )
        if self.radius is not None and not 0 < self.radius <= IRSA_MAX_RADIUS_DEG:
            raise ConfigError(
                f"ztf.irsa.radius: {self.radius} deg is outside (0, {IRSA_MAX_RADIUS_DEG}], "
                "IRSA's cone limit; split the field into smaller cones."
            )
        bad = sorted(set(self.filters) - {"zg", "zr", "zi"})
        if bad:
            raise ConfigError(
                f"ztf.irsa.filters: unknown band(s) {bad}; valid bands are zg, zr, zi."
            )
        if self.mjd_range is not None and (
            len(self.mjd_range) != 2 or self.mjd_range[0] > self.mjd_range[1]
        ):
            raise ConfigError(
                "ztf.irsa.mjd_range: expected [start, end] with start <= end, "
                f"found {self.mjd_range}."
            )
        return self


@dataclass(frozen=True)
class ZtfOutputs:
    """Where ingest_ztf writes."""

    dir: str = "data/raw/ztf"
    alerts: str = "data/raw/ztf/alerts.parquet"
    lightcurves: str = "data/raw/ztf/lightcurves.parquet"
    packets: str = "data/raw/ztf/packets.parquet"
    cutouts: str = "data/raw/ztf/cutouts"
    report: str = "reports/ingest_ztf.json"
    metrics: str = "reports/metrics/ingest_ztf.json"


@dataclass(frozen=True)
class ZtfConfig:
    """The ``ztf`` section of params.yaml."""

    source: Literal["sample", "irsa"] = "sample"
    on_error: Literal["quarantine", "fail"] = "quarantine"
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    dr: DrConfig = field(default_factory=DrConfig)
    irsa: IrsaConfig = field(default_factory=IrsaConfig)
    outputs: ZtfOutputs = field(default_factory=ZtfOutputs)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ZtfConfig:
        """Build from the full params mapping and check the choices."""
        if "ztf" not in params:
            raise ConfigError("params: no `ztf` section; run `make params` to compose params.yaml.")
        cfg = from_mapping(cls, params["ztf"], where="ztf")
        cfg.alerts.validate()
        if cfg.source == "irsa":
            cfg.irsa.validate()
        return cfg
