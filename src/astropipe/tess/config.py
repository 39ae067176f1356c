"""The ``tess`` config group (conf/tess/default.yaml) and the reader's options.

Two layers:

* :class:`TessConfig` and the dataclasses under it are the typed schema of the ``tess`` group
  (registered in :data:`astropipe.schema.GROUPS`): every key of conf/tess has its type and range
  here, checked by :func:`astropipe.configtypes.from_mapping` in strict mode. The column maps are
  spelled out in conf/tess (``tess.read.layouts``), so a new HLSP layout is a conf edit.
* :class:`TessReadConfig` is what the reader takes: flux column, quality setting, and the
  column maps as :class:`~astropipe.tess.columns.ColumnMap` objects, in order.
  :meth:`ReadConfig.reader` builds it from the checked ``tess.read`` section.

The built-in maps (:data:`~astropipe.tess.columns.DEFAULT_LAYOUTS`) are the default of
``tess.read.layouts`` in code, for direct use of the library; ``tests/test_tess_stage.py``
checks that conf/tess lists the same maps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from astropipe.configtypes import (
    Declination,
    NonEmptyList,
    NonNegativeInt,
    Pair,
    PositiveFloat,
    PositiveInt,
    RightAscension,
    from_mapping,
)
from astropipe.errors import ConfigError
from astropipe.mast.config import ProductFilter
from astropipe.tess.columns import (
    DEFAULT_LAYOUTS,
    ColumnMap,
    FluxColumns,
    column_map_from_mapping,
)
from astropipe.tess.quality import PRESETS

__all__ = [
    "TessReadConfig",
    "FluxColumnsConfig",
    "ColumnMapConfig",
    "ReadConfig",
    "TessOutputs",
    "TessLiveConfig",
    "LightCurveProducts",
    "TessConfig",
]

#: A QUALITY bitmask: survey bits are 0-31.
QualityBitmask = Annotated[int, Field(ge=0, lt=1 << 32)]


def _quality_setting(value: Any) -> str | int:
    # One check with one message: a pydantic union of a Literal and an int would report each
    # member's failure under an internal tag instead of the key.
    if isinstance(value, str) and value in PRESETS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32:
        return value
    raise ValueError(f"a preset {list(PRESETS)} or an integer bitmask in [0, 2**32)")


def _extension(value: Any) -> str | int:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError("an EXTNAME or an HDU index >= 1 (0 is the primary header, not a table)")


#: A table HDU: its EXTNAME, or its index (>= 1).
Extension = Annotated[Any, AfterValidator(_extension)]

#: The ``tess.read.quality`` setting: a preset name (``none``, ``default``, ``hard``,
#: ``hardest``) or an integer bitmask in [0, 2**32).
QualitySetting = Annotated[Any, AfterValidator(_quality_setting)]
# An input name becomes a directory under outputs.fits: one plain path component.
_INPUT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class TessReadConfig:
    """How :func:`astropipe.tess.reader.read_lightcurve_fits` reads a light-curve file.

    Parameters
    ----------
    flux_column
        Logical flux to read: ``"pdcsap"`` (default: PDCSAP_FLUX, eleanor CORR_FLUX) or
        ``"sap"`` (SAP_FLUX, eleanor RAW_FLUX), or another name a column map defines (eleanor:
        ``corr``, ``pca``, ``psf``, ``raw``).
    quality
        A preset (``none``, ``default``, ``hard``, ``hardest``; see
        :mod:`astropipe.tess.quality`) or an integer bitmask. Cadences with
        ``QUALITY & bitmask != 0`` are kept and get
        :data:`~astropipe.lightcurve.FLAG_QUALITY_MASKED`.
    layouts
        The column maps tried in order; the first one a file matches is used.
    """

    flux_column: str = "pdcsap"
    quality: str | int = "default"
    layouts: tuple[ColumnMap, ...] = field(default=DEFAULT_LAYOUTS)

    def __post_init__(self) -> None:
        layouts = tuple(self.layouts)
        object.__setattr__(self, "layouts", layouts)
        if not layouts:
            raise ConfigError("tess.layouts is empty; give at least one column map.")
        names = [lay.name for lay in layouts]
        if len(set(names)) != len(names):
            raise ConfigError(f"tess.layouts: names repeat ({names}); give each map its own name.")
        known = sorted({k for lay in layouts for k in lay.fluxes})
        if self.flux_column not in known:
            raise ConfigError(
                f"tess.flux_column={self.flux_column!r} is not defined by any column map; "
                f"use one of {known}."
            )
        q = self.quality
        if isinstance(q, bool) or not isinstance(q, (int, str)):
            raise ConfigError(
                f"tess.quality={q!r}: expected a preset {list(PRESETS)} or an integer bitmask."
            )
        if isinstance(q, str) and q not in PRESETS:
            raise ConfigError(
                f"tess.quality={q!r} is not a preset; use one of {list(PRESETS)} or an integer "
                "bitmask."
            )
        if isinstance(q, int) and not 0 <= q < 1 << 32:
            raise ConfigError(
                f"tess.quality={q}: a bitmask must be in [0, 2**32); survey bits are 0-31."
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "tess") -> TessReadConfig:
        """Build from a plain mapping such as ``params["tess"]["read"]``.

        ``layouts``, when given, maps a layout name to its column map (see
        :func:`~astropipe.tess.columns.column_map_from_mapping`) and replaces the defaults.
        """
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"{where}: unknown keys {unknown}; known keys are "
                f"{sorted(cls.__dataclass_fields__)}."
            )
        if "layouts" in data:
            raw = data["layouts"]
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{where}.layouts: expected a mapping name → column map.")
            data["layouts"] = tuple(column_map_from_mapping(k, v) for k, v in raw.items())
        return cls(**data)


# --- the typed schema of the ``tess`` config group -------------------------------------------


@dataclass(frozen=True)
class FluxColumnsConfig:
    """The columns behind one logical flux (:class:`~astropipe.tess.columns.FluxColumns`)."""

    flux: str
    err: str | None = None
    err_relative_to: str | None = None


@dataclass(frozen=True)
class ColumnMapConfig:
    """One light-curve layout (see :class:`~astropipe.tess.columns.ColumnMap`).

    Keys whose value differs between the shipped maps have no default here: each map in
    conf/tess spells them out.
    """

    quality_family: Literal["tess", "kepler"]
    match: dict[str, str]
    extension: Extension
    quality: str
    cadenceno: str | None
    fluxes: dict[str, FluxColumnsConfig]
    target_keys: NonEmptyList
    extra_quality_bits: QualityBitmask
    time: str = "TIME"
    time_reference_jd: PositiveFloat | None = None
    time_scale: Literal["TDB"] = "TDB"
    cadence_s: PositiveFloat | None = None

    def column_map(self, name: str) -> ColumnMap:
        """The reader's :class:`~astropipe.tess.columns.ColumnMap` for this entry."""
        return ColumnMap(
            name=name,
            quality_family=self.quality_family,
            match=dict(self.match),
            extension=self.extension,
            time=self.time,
            quality=self.quality,
            cadenceno=self.cadenceno,
            fluxes={
                k: FluxColumns(f.flux, f.err, f.err_relative_to) for k, f in self.fluxes.items()
            },
            target_keys=tuple(self.target_keys),
            extra_quality_bits=self.extra_quality_bits,
            time_reference_jd=self.time_reference_jd,
            time_scale=self.time_scale,
            cadence_s=self.cadence_s,
        )

    @classmethod
    def from_column_map(cls, lay: ColumnMap) -> ColumnMapConfig:
        """The config entry of a built-in :class:`~astropipe.tess.columns.ColumnMap`."""
        return cls(
            quality_family=lay.quality_family,  # type: ignore[arg-type]
            match=dict(lay.match),
            extension=lay.extension,
            quality=lay.quality,
            cadenceno=lay.cadenceno,
            fluxes={
                k: FluxColumnsConfig(f.flux, f.err, f.err_relative_to)
                for k, f in lay.fluxes.items()
            },
            target_keys=list(lay.target_keys),
            extra_quality_bits=lay.extra_quality_bits,
            time=lay.time,
            time_reference_jd=lay.time_reference_jd,
            time_scale=lay.time_scale,  # type: ignore[arg-type]
            cadence_s=lay.cadence_s,
        )


def _default_layouts() -> dict[str, ColumnMapConfig]:
    return {lay.name: ColumnMapConfig.from_column_map(lay) for lay in DEFAULT_LAYOUTS}


@dataclass(frozen=True)
class ReadConfig:
    """``tess.read``: how every light-curve file is read (the reader's options).

    ``layouts`` are tried in the order written; the first one a file matches is used.
    """

    flux_column: str = "pdcsap"
    quality: QualitySetting = "default"
    layouts: dict[str, ColumnMapConfig] = field(default_factory=_default_layouts)

    def reader(self) -> TessReadConfig:
        """The :class:`TessReadConfig` the reader takes, with the column maps in order."""
        known = sorted({k for lay in self.layouts.values() for k in lay.fluxes})
        if self.flux_column not in known:
            raise ConfigError(
                f"tess.read.flux_column: {self.flux_column!r} is not defined by any column map "
                f"in tess.read.layouts; use one of {known}."
            )
        layouts = []
        for name, lay in self.layouts.items():
            try:
                layouts.append(lay.column_map(name))
            except ConfigError as exc:
                raise ConfigError(f"tess.read.layouts.{name}: {exc}") from None
        if not layouts:
            raise ConfigError("tess.read.layouts: empty; give at least one column map.")
        return TessReadConfig(
            flux_column=self.flux_column, quality=self.quality, layouts=tuple(layouts)
        )


@dataclass(frozen=True)
class TessOutputs:
    """Where ingest_tess writes; ``fits`` and ``lightcurves`` lie inside ``dir``."""

    dir: str = "data/raw/tess"
    fits: str = "data/raw/tess/fits"
    lightcurves: str = "data/raw/tess/lightcurves.parquet"
    report: str = "reports/ingest_tess.json"
    metrics: str = "reports/metrics/ingest_tess.json"


@dataclass(frozen=True)
class LightCurveProducts(ProductFilter):
    """:class:`~astropipe.mast.config.ProductFilter` whose defaults pick SPOC light curves."""

    subgroups: list[str] = field(default_factory=lambda: ["LC"])
    types: list[str] = field(default_factory=lambda: ["SCIENCE"])
    suffixes: list[str] = field(default_factory=lambda: ["_lc.fits"])


@dataclass(frozen=True)
class TessLiveConfig:
    """``tess.source=live``: which MAST light curves to download (see astropipe.tess.live).

    The connection (endpoint, retries, timeouts, token variables) is ``mast.client``.
    ``target_name`` holds TIC numbers as text (CAOM ``target_name``), ``sectors`` are CAOM
    ``sequence_number`` values; ``limit`` caps the light curves downloaded; ``max_points``
    caps the cadences kept per light curve (every k-th, k = ceil(n / max_points)).
    """

    target_name: list[str] = field(default_factory=lambda: ["261136679"])  # pi Men
    sectors: list[NonNegativeInt] = field(default_factory=list)
    obs_collection: NonEmptyList = field(default_factory=lambda: ["TESS"])
    t_min: Pair | None = None
    t_max: Pair | None = None
    ra: RightAscension | None = None
    dec: Declination | None = None
    radius: PositiveFloat | None = None
    limit: PositiveInt | None = None
    max_points: PositiveInt | None = None
    products: LightCurveProducts = field(default_factory=LightCurveProducts)
    cache_dir: str = "data/cache/mast"


@dataclass(frozen=True)
class TessConfig:
    """The ``tess`` section of params.yaml."""

    source: Literal["sample", "live"] = "sample"
    inputs: dict[str, str] = field(
        default_factory=lambda: {"tess": "data/sample/tess", "kepler": "data/sample/kepler"}
    )
    pattern: str = "**/*.fits"
    on_error: Literal["quarantine", "fail"] = "quarantine"
    read: ReadConfig = field(default_factory=ReadConfig)
    outputs: TessOutputs = field(default_factory=TessOutputs)
    live: TessLiveConfig = field(default_factory=TessLiveConfig)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TessConfig:
        """Build from the full params mapping; check the keys, the inputs and the column maps."""
        if "tess" not in params:
            raise ConfigError(
                "params: no `tess` section; run `make params` to compose params.yaml."
            )
        cfg = from_mapping(cls, params["tess"], where="tess")
        if cfg.source == "sample" and not cfg.inputs:
            raise ConfigError(
                "tess.inputs: empty; name at least one directory of light-curve FITS files, "
                "e.g. {tess: data/sample/tess}."
            )
        bad = sorted(n for n in cfg.inputs if not _INPUT_NAME.fullmatch(n) or n in (".", ".."))
        if bad:
            raise ConfigError(
                f"tess.inputs: names {bad} are not plain names; each name becomes a directory "
                "under tess.outputs.fits, so use letters, digits, '_', '-', '.' only."
            )
        if not cfg.pattern or cfg.pattern.startswith("/") or ".." in cfg.pattern.split("/"):
            raise ConfigError(
                f"tess.pattern: {cfg.pattern!r} must be a relative glob inside each input "
                "directory, e.g. '**/*.fits'."
            )
        cfg.read.reader()  # the column maps and the flux column, checked now
        if cfg.source == "live":
            from astropipe.tess.live import live_query

            live_query(cfg.live)  # a bounded query (target, sectors or cone), checked now
        return cfg
