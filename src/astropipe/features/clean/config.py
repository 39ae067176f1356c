"""The ``features.clean`` section: one switch and its parameters per cleaning step.

Defaults live in ``conf/features/default.yaml`` (``tests/test_config.py`` checks these equal
them). Every step says which kinds of light curve it applies to (``flux``: TESS/Kepler/K2,
``mag``: ZTF), so magnitudes stay magnitudes unless asked otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from astropipe.configtypes import Fraction, NonNegativeInt, PositiveFloat, PositiveInt
from astropipe.tess.config import QualitySetting

__all__ = [
    "Kind",
    "QualityConfig",
    "OutlierConfig",
    "GapConfig",
    "Ephemeris",
    "MaskRange",
    "TransitConfig",
    "DetrendConfig",
    "DenoiseConfig",
    "NormaliseConfig",
    "CleanConfig",
]

Kind = Literal["mag", "flux"]
Kinds = list[Kind]


def _odd_window(value: int) -> int:
    if value < 3 or value % 2 == 0:
        raise ValueError("an odd integer >= 3")
    return value


OddWindow = Annotated[int, AfterValidator(_odd_window)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


@dataclass(frozen=True)
class QualityConfig:
    """Which cadences the quality step drops."""

    enabled: bool = True
    #: TESS/Kepler/K2 QUALITY: none | default | hard | hardest (lightkurve's presets) | a bitmask.
    mission: QualitySetting = "default"
    #: ZTF rows: drop where (catflags & ztf_catflags) != 0; 0 keeps today's behaviour.
    ztf_catflags: NonNegativeInt = 0


@dataclass(frozen=True)
class OutlierConfig:
    """Outlier rejection on each light curve (object, band, source)."""

    method: Literal["none", "sigma", "mad", "iqr", "modified_z", "isolation_forest", "ensemble"] = (
        "sigma"
    )
    kinds: Kinds = field(default_factory=lambda: ["flux", "mag"])
    clip: Literal["auto", "upper", "lower", "both"] = "auto"
    #: raw: test the values themselves | residual: value minus a running median of `window`
    #: points, so a slow trend does not hide a spike or pass for outliers.
    against: Literal["raw", "residual"] = "residual"
    window: OddWindow = 25
    sigma: PositiveFloat = 5.0
    maxiters: PositiveInt = 5
    mad_threshold: PositiveFloat = 5.0
    iqr_factor: PositiveFloat = 3.0
    modified_z_threshold: PositiveFloat = 3.5
    forest_trees: PositiveInt = 100
    forest_contamination: Annotated[float, Field(gt=0, le=0.5)] = 0.01
    forest_seed: NonNegativeInt = 0
    ensemble_methods: list[Literal["sigma", "mad", "iqr", "modified_z", "isolation_forest"]] = (
        field(default_factory=lambda: ["sigma", "mad", "iqr", "modified_z"])
    )
    ensemble_k: PositiveInt = 2

    def __post_init__(self) -> None:
        if self.ensemble_k > len(self.ensemble_methods):
            # pydantic reports a ValueError as "<section>: {...} is not valid; expected <this>".
            raise ValueError(
                f"ensemble_k <= the number of ensemble_methods ({len(self.ensemble_methods)}), "
                "not " + str(self.ensemble_k) + "; lower k or add methods"
            )


@dataclass(frozen=True)
class GapConfig:
    """Splitting at gaps in time."""

    kinds: Kinds = field(default_factory=lambda: ["flux"])
    gap_threshold_hours: PositiveFloat = 12.0
    min_points_per_segment: PositiveInt = 50


@dataclass(frozen=True)
class Ephemeris:
    """A known transiting body: its transits stay out of the baseline fit."""

    object_id: str
    period: PositiveFloat  # d
    epoch: FiniteFloat  # MJD (TDB) of one mid-transit
    duration_hours: PositiveFloat


@dataclass(frozen=True)
class MaskRange:
    """A user mask: the points of ``object_id`` in ``[start, end]`` (MJD) stay out of the fit."""

    object_id: str
    start: FiniteFloat
    end: FiniteFloat


@dataclass(frozen=True)
class TransitConfig:
    """Known transits and user masks, kept out of the baseline fit (never dropped)."""

    ephemerides: list[Ephemeris] = field(default_factory=list)
    #: Also read ephemerides of KOI/TOI entries linked to the light curves (ingest_catalogs).
    from_catalogs: bool = False
    catalogs_dir: str = "data/raw/catalogs"
    #: Mask ``duration_factor × duration`` around each mid-transit.
    duration_factor: PositiveFloat = 1.5
    masks: list[MaskRange] = field(default_factory=list)


@dataclass(frozen=True)
class DetrendConfig:
    """Baseline removal per segment."""

    method: Literal["none", "savgol", "biweight"] = "savgol"
    kinds: Kinds = field(default_factory=lambda: ["flux"])
    window_length: OddWindow = 101
    polyorder: NonNegativeInt = 2
    sigma: PositiveFloat = 3.0
    niters: PositiveInt = 3
    break_tolerance: PositiveFloat = 5.0
    biweight_window_days: PositiveFloat = 0.5
    biweight_cval: PositiveFloat = 5.0
    biweight_iterations: PositiveInt = 5
    transits: TransitConfig = field(default_factory=TransitConfig)

    def __post_init__(self) -> None:
        if self.polyorder >= self.window_length:
            raise ValueError(
                f"polyorder < window_length ({self.window_length}), not {self.polyorder}; "
                "lower polyorder or widen the window"
            )


@dataclass(frozen=True)
class DenoiseConfig:
    """Wavelet denoising (soft universal threshold), off by default."""

    method: Literal["none", "wavelet"] = "none"
    kinds: Kinds = field(default_factory=lambda: ["flux"])
    wavelet: str = "db4"
    levels: PositiveInt = 3


@dataclass(frozen=True)
class NormaliseConfig:
    """Normalisation of each light curve, its own step after detrending."""

    method: Literal["none", "median", "mean", "robust", "unity", "minmax", "zscore", "quantile"] = (
        "median"
    )
    kinds: Kinds = field(default_factory=lambda: ["flux"])


@dataclass(frozen=True)
class CleanConfig:
    """``features.clean``: the cleaning steps, in the order they run."""

    enabled: bool = True
    #: Warn when one step drops more than this fraction of a survey's points.
    warn_fraction: Fraction = 0.2
    quality: QualityConfig = field(default_factory=QualityConfig)
    outliers: OutlierConfig = field(default_factory=OutlierConfig)
    gaps: GapConfig = field(default_factory=GapConfig)
    detrend: DetrendConfig = field(default_factory=DetrendConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    normalise: NormaliseConfig = field(default_factory=NormaliseConfig)
