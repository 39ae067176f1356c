"""Typed schema of the ``calibration`` config group (conf/calibration/default.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

from astropipe.calibration.combine import CombineConfig
from astropipe.compute import ComputeConfig, memory_budget
from astropipe.configtypes import (
    MemorySize,
    NonEmptyList,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    from_mapping,
)
from astropipe.errors import ConfigError


def _odd(n: int) -> int:
    if n < 1 or n % 2 == 0:
        raise ValueError("a positive odd integer (the kernel needs a centre pixel)")
    return n


OddPositiveInt = Annotated[int, AfterValidator(_odd)]

__all__ = [
    "InputsConfig",
    "OutputsConfig",
    "DetectorConfig",
    "OverscanConfig",
    "FlatConfig",
    "CosmicsConfig",
    "CalibrationConfig",
]


@dataclass(frozen=True)
class InputsConfig:
    """Where the raw frames are."""

    path: str = "data/sample/ccd/night"
    patterns: NonEmptyList = field(default_factory=lambda: ["*.fits", "*.fit", "*.fts"])


@dataclass(frozen=True)
class OutputsConfig:
    """Where calibrate_images writes."""

    masters: str = "data/interim/calibration/masters"
    science: str = "data/interim/calibration/science"
    metrics: str = "reports/metrics/calibrate_images.json"
    report: str = "reports/calibrate_images.json"


@dataclass(frozen=True)
class DetectorConfig:
    """Gain, read noise and saturation: a value here overrides the header keywords."""

    gain: PositiveFloat | None = None
    read_noise: NonNegativeFloat | None = None
    saturation: PositiveFloat | None = None
    gain_keywords: list[str] = field(default_factory=lambda: ["GAIN", "EGAIN"])
    read_noise_keywords: list[str] = field(default_factory=lambda: ["RDNOISE", "READNOIS"])
    saturation_keywords: list[str] = field(default_factory=lambda: ["SATURATE", "SATLEVEL"])
    default_saturation: PositiveFloat = 65535.0


@dataclass(frozen=True)
class OverscanConfig:
    """Overscan subtraction from BIASSEC (skipped for frames without BIASSEC)."""

    method: Literal["median", "mean"] = "median"
    axis: Literal[0, 1] | None = None


@dataclass(frozen=True)
class FlatConfig:
    """Flat-field normalisation and bad-pixel limits."""

    bad_low: PositiveFloat = 0.5
    bad_high: PositiveFloat = 1.5


@dataclass(frozen=True)
class CosmicsConfig:
    """astroscrappy.detect_cosmics parameters (see its documentation)."""

    enabled: bool = True
    sigclip: PositiveFloat = 4.5
    sigfrac: PositiveFloat = 0.3
    objlim: PositiveFloat = 5.0
    niter: PositiveInt = 4
    sepmed: bool = True
    cleantype: Literal["median", "medmask", "meanmask", "idw"] = "meanmask"
    fsmode: Literal["median", "convolve"] = "median"
    psfmodel: Literal["gauss", "gaussx", "gaussy", "moffat"] = "gauss"
    psffwhm: PositiveFloat = 2.5
    psfsize: OddPositiveInt = 7


@dataclass(frozen=True)
class CalibrationConfig:
    """The ``calibration`` section of params.yaml."""

    inputs: InputsConfig = field(default_factory=InputsConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    overscan: OverscanConfig = field(default_factory=OverscanConfig)
    bias: CombineConfig = field(default_factory=CombineConfig)
    dark: CombineConfig = field(default_factory=CombineConfig)
    flat_combine: CombineConfig = field(default_factory=CombineConfig)
    flat: FlatConfig = field(default_factory=FlatConfig)
    require_dark: bool = False
    cosmics: CosmicsConfig = field(default_factory=CosmicsConfig)
    memory_limit: MemorySize | None = "512MB"
    tile_rows: PositiveInt | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CalibrationConfig:
        """Build from the full params mapping, checking every key's type and range.

        A null ``memory_limit`` becomes ``compute.memory_limit``; a larger one is refused.
        """
        cfg = from_mapping(cls, params.get("calibration", {}) or {}, where="calibration")
        compute = ComputeConfig.from_params(params)
        try:
            memory_budget(compute, cfg.memory_limit)
        except ConfigError as exc:
            raise ConfigError(f"calibration.memory_limit: {exc}") from None
        if cfg.memory_limit is None:
            cfg = replace(cfg, memory_limit=compute.memory_limit)
        if not 0 < cfg.flat.bad_low < 1 < cfg.flat.bad_high:
            raise ConfigError(
                "calibration.flat: need 0 < bad_low < 1 < bad_high, found "
                f"{cfg.flat.bad_low}, {cfg.flat.bad_high}."
            )
        return cfg
