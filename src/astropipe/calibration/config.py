"""Typed schema of the ``calibration`` config group (conf/calibration/default.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from astropipe.calibration.combine import CENTER_FUNCS, COMBINE_METHODS, CombineConfig
from astropipe.calibration.sections import OVERSCAN_METHODS
from astropipe.config import choice, from_mapping
from astropipe.errors import ConfigError

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
    patterns: list[str] = field(default_factory=lambda: ["*.fits", "*.fit", "*.fts"])


@dataclass(frozen=True)
class OutputsConfig:
    """Where calibrate_images writes."""

    masters: str = "data/interim/calibration/masters"
    science: str = "data/interim/calibration/science"
    metrics: str = "reports/metrics/calibrate_images.json"


@dataclass(frozen=True)
class DetectorConfig:
    """Gain, read noise and saturation: a value here overrides the header keywords."""

    gain: float | None = None
    read_noise: float | None = None
    saturation: float | None = None
    gain_keywords: list[str] = field(default_factory=lambda: ["GAIN", "EGAIN"])
    read_noise_keywords: list[str] = field(default_factory=lambda: ["RDNOISE", "READNOIS"])
    saturation_keywords: list[str] = field(default_factory=lambda: ["SATURATE", "SATLEVEL"])
    default_saturation: float = 65535.0


@dataclass(frozen=True)
class OverscanConfig:
    """Overscan subtraction from BIASSEC (skipped for frames without BIASSEC)."""

    method: str = "median"
    axis: int | None = None


@dataclass(frozen=True)
class FlatConfig:
    """Flat-field normalisation and bad-pixel limits."""

    bad_low: float = 0.5
    bad_high: float = 1.5


@dataclass(frozen=True)
class CosmicsConfig:
    """astroscrappy.detect_cosmics parameters (see its documentation)."""

    enabled: bool = True
    sigclip: float = 4.5
    sigfrac: float = 0.3
    objlim: float = 5.0
    niter: int = 4
    sepmed: bool = True
    cleantype: str = "meanmask"
    fsmode: str = "median"
    psfmodel: str = "gauss"
    psffwhm: float = 2.5
    psfsize: int = 7


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
    memory_limit: str = "512MB"
    tile_rows: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CalibrationConfig:
        """Build from the full params mapping and check every choice."""
        cfg = from_mapping(cls, params.get("calibration", {}) or {}, where="calibration")
        for name in ("bias", "dark", "flat_combine"):
            comb: CombineConfig = getattr(cfg, name)
            choice(comb.method, COMBINE_METHODS, where=f"calibration.{name}.method")
            choice(comb.clip.cenfunc, CENTER_FUNCS, where=f"calibration.{name}.clip.cenfunc")
            choice(comb.clip.stdfunc, ("std",), where=f"calibration.{name}.clip.stdfunc")
            if comb.clip.maxiters < 1:
                raise ConfigError(f"calibration.{name}.clip.maxiters: must be >= 1.")
        choice(cfg.overscan.method, OVERSCAN_METHODS, where="calibration.overscan.method")
        if cfg.overscan.axis not in (None, 0, 1):
            raise ConfigError("calibration.overscan.axis: choose null (auto), 0 or 1.")
        if not 0 < cfg.flat.bad_low < 1 < cfg.flat.bad_high:
            raise ConfigError(
                "calibration.flat: need 0 < bad_low < 1 < bad_high, found "
                f"{cfg.flat.bad_low}, {cfg.flat.bad_high}."
            )
        if cfg.tile_rows is not None and cfg.tile_rows < 1:
            raise ConfigError("calibration.tile_rows: must be >= 1, or null for automatic.")
        return cfg
