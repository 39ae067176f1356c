"""Typed schema of the ``validation`` config group (conf/validation/default.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from astropipe.configtypes import Fraction, NonEmptyList, Pair, from_mapping
from astropipe.errors import ConfigError

__all__ = [
    "TableConfig",
    "SurveyRange",
    "RangesConfig",
    "FramesConfig",
    "CubeCollectionConfig",
    "CubesConfig",
    "TessLightcurvesConfig",
    "ValidationOutputs",
    "ValidationConfig",
    "TABLES",
    "ARTIFACTS",
]

#: The tables with a contract, in validation (and report) order.
TABLES = (
    "alerts",
    "lightcurves",
    "packets",
    "features",
    "koi",
    "toi",
    "k2",
    "objects",
    "mast_observations",
    "mast_products",
)
#: The image artifacts with a contract (summarised one row per frame / cube step), in order.
ARTIFACTS = ("frames", "cubes")


@dataclass(frozen=True)
class TableConfig:
    """One table to validate: where it is, how to build it, and its completeness thresholds.

    ``recorded_in`` (the packets table only): the Parquet file whose provenance ``packets``
    entry records this table's row count and SHA-256 (``alerts.parquet``); the contract checks
    the table against it.
    """

    path: str
    build: str
    completeness: dict[str, Fraction] = field(default_factory=dict)
    recorded_in: str | None = None


@dataclass(frozen=True)
class SurveyRange:
    """One survey's plausible MJD range and band names (a value of the ``survey`` column)."""

    mjd: Pair
    bands: NonEmptyList


def _default_surveys() -> dict[str, SurveyRange]:
    # The same values as conf/validation/default.yaml (the mission dates are cited there).
    return {
        "ZTF": SurveyRange(mjd=[57000.0, 62000.0], bands=["zg", "zr", "zi"]),
        "Kepler": SurveyRange(mjd=[54900.0, 56500.0], bands=["Kepler"]),
        "K2": SurveyRange(mjd=[56650.0, 58500.0], bands=["Kepler"]),
        "TESS": SurveyRange(mjd=[58300.0, 62000.0], bands=["TESS"]),
    }


#: The survey whose range applies to tables without a ``survey`` column (alerts.parquet).
ALERTS_SURVEY = "ZTF"


@dataclass(frozen=True)
class RangesConfig:
    """Plausibility ranges shared by the contracts.

    ``surveys`` maps each value of a table's ``survey`` column to its MJD range and bands; the
    light-curve, cleaned light-curve and features contracts check each row against its own
    survey's entry (and refuse a survey not listed), the alerts contract uses ``ZTF``'s.
    """

    ra: Pair = field(default_factory=lambda: [0.0, 360.0])
    dec: Pair = field(default_factory=lambda: [-90.0, 90.0])
    mag: Pair = field(default_factory=lambda: [10.0, 25.0])
    limiting_mag: Pair = field(default_factory=lambda: [10.0, 25.0])
    surveys: dict[str, SurveyRange] = field(default_factory=_default_surveys)

    def validate(self) -> RangesConfig:
        """Check every ``[min, max]`` pair and the survey entries; return self."""
        pairs = [(f"validation.ranges.{n}", getattr(self, n)) for n in ("ra", "dec", "mag")]
        pairs.append(("validation.ranges.limiting_mag", self.limiting_mag))
        pairs += [(f"validation.ranges.surveys.{s}.mjd", r.mjd) for s, r in self.surveys.items()]
        for where, pair in pairs:
            if len(pair) != 2 or not pair[0] < pair[1]:
                raise ConfigError(f"{where}: expected [min, max] with min < max, found {pair}.")
        if ALERTS_SURVEY not in self.surveys:
            raise ConfigError(
                f"validation.ranges.surveys: no {ALERTS_SURVEY!r} entry; the alerts contract "
                f"uses it. Add {ALERTS_SURVEY}: {{mjd: [min, max], bands: [...]}}."
            )
        return self

    def survey(self, name: str) -> SurveyRange:
        """The entry of survey ``name`` (a :class:`ConfigError` naming the key if absent)."""
        try:
            return self.surveys[name]
        except KeyError:
            raise ConfigError(
                f"validation.ranges.surveys: no {name!r} entry; listed: {sorted(self.surveys)}."
            ) from None


def _fraction(value: float, where: str) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{where}: {value} is not a fraction in [0, 1].")
    return float(value)


@dataclass(frozen=True)
class FramesConfig:
    """Calibrated FITS frames (calibrate_images): where they are and the contract thresholds."""

    science: str
    masters: str
    build: str
    pattern: str = "*.fits"
    min_finite_fraction: Fraction = 1.0
    min_err_positive_fraction: Fraction = 1.0
    filters: NonEmptyList = field(
        default_factory=lambda: ["U", "B", "V", "R", "I", "u", "g", "r", "i", "z"]
    )
    mjd: Pair = field(default_factory=lambda: [40587.0, 88069.0])

    def validate(self) -> FramesConfig:
        """Check the fractions, the filter list and the MJD range; return self."""
        _fraction(self.min_finite_fraction, "validation.frames.min_finite_fraction")
        _fraction(self.min_err_positive_fraction, "validation.frames.min_err_positive_fraction")
        if not self.filters:
            raise ConfigError("validation.frames.filters: list at least one filter name.")
        if len(self.mjd) != 2 or not self.mjd[0] < self.mjd[1]:
            raise ConfigError(
                f"validation.frames.mjd: expected [min, max] with min < max, found {self.mjd}."
            )
        return self


@dataclass(frozen=True)
class TessLightcurvesConfig:
    """TESS/Kepler/K2 light curves (ingest_tess): where they are and the contract thresholds."""

    path: str
    build: str
    min_flux_finite_fraction: Fraction = 0.5
    mjd: Pair = field(default_factory=lambda: [54900.0, 62000.0])
    completeness: dict[str, Fraction] = field(default_factory=dict)

    def validate(self) -> TessLightcurvesConfig:
        """Check the MJD range; return self."""
        if not self.mjd[0] < self.mjd[1]:
            raise ConfigError(
                "validation.tess_lightcurves.mjd: expected [min, max] with min < max, found "
                f"{self.mjd}."
            )
        return self


@dataclass(frozen=True)
class CubeCollectionConfig:
    """One Zarr store (fits_to_zarr collection) and the input files it must record."""

    path: str
    input_dir: str
    glob: str
    build: str
    min_finite_fraction: Fraction = 1.0


@dataclass(frozen=True)
class CubesConfig:
    """The Zarr stores to validate, in order."""

    collections: dict[str, CubeCollectionConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationOutputs:
    """Where the validate stage writes."""

    docs: str = "reports/validation/docs"
    summary: str = "reports/validation/summary.json"
    metrics: str = "reports/metrics/validate.json"


@dataclass(frozen=True)
class ValidationConfig:
    """The whole ``validation`` section."""

    tables: dict[str, TableConfig] = field(default_factory=dict)
    frames: FramesConfig | None = None
    cubes: CubesConfig | None = None
    tess_lightcurves: TessLightcurvesConfig | None = None
    ranges: RangesConfig = field(default_factory=RangesConfig)
    outputs: ValidationOutputs = field(default_factory=ValidationOutputs)
    fail_on_error: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ValidationConfig:
        """Build from the full params dict (its ``validation`` section), checking every key."""
        section = params.get("validation")
        if not isinstance(section, Mapping) or not section:
            raise ConfigError(
                "params.yaml: no 'validation' section; run `make params` to compose it from conf/."
            )
        raw = dict(section)
        tables_raw = raw.pop("tables", None) or {}
        unknown = sorted(set(tables_raw) - set(TABLES))
        if unknown:
            raise ConfigError(
                f"validation.tables: unknown table(s) {unknown}; valid tables are {list(TABLES)}."
            )
        tables = {
            name: from_mapping(TableConfig, tables_raw[name], where=f"validation.tables.{name}")
            for name in TABLES
            if name in tables_raw
        }
        for name, tcfg in tables.items():
            if (tcfg.recorded_in is not None) != (name == "packets"):
                raise ConfigError(
                    f"validation.tables.{name}.recorded_in: "
                    + (
                        "required; name the table whose provenance records the packets "
                        "(${ztf.outputs.alerts})."
                        if name == "packets"
                        else f"{tcfg.recorded_in!r} given, but only the packets table has one; "
                        "set it to null."
                    )
                )
            for col, frac in tcfg.completeness.items():
                if not 0.0 <= float(frac) <= 1.0:
                    raise ConfigError(
                        f"validation.tables.{name}.completeness.{col}: {frac} is not a fraction "
                        "in [0, 1]."
                    )
        cubes_raw = raw.pop("cubes", None)
        cfg = from_mapping(cls, raw, where="validation")
        cfg.ranges.validate()
        if cfg.frames is not None:
            cfg.frames.validate()
        if cfg.tess_lightcurves is not None:
            cfg.tess_lightcurves.validate()
        return ValidationConfig(
            tables=tables,
            frames=cfg.frames,
            cubes=_cubes(cubes_raw),
            tess_lightcurves=cfg.tess_lightcurves,
            ranges=cfg.ranges,
            outputs=cfg.outputs,
            fail_on_error=cfg.fail_on_error,
        )


def _cubes(raw: Mapping[str, Any] | None) -> CubesConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"validation.cubes: expected a mapping, found {raw!r}.")
    unknown = sorted(set(raw) - {"collections"})
    if unknown:
        raise ConfigError(
            f"validation.cubes: unknown key(s) {unknown}; valid keys are ['collections']."
        )
    collections = {}
    for name, item in (raw.get("collections") or {}).items():
        where = f"validation.cubes.collections.{name}"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: expected a mapping, found {item!r}.")
        coll = from_mapping(CubeCollectionConfig, item, where=where)
        _fraction(coll.min_finite_fraction, f"{where}.min_finite_fraction")
        collections[str(name)] = coll
    return CubesConfig(collections=collections)
