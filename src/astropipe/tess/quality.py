"""TESS and Kepler/K2 cadence quality bits as data, the ``none/default/hard/hardest`` presets.

The bit meanings come from the mission documents:

* TESS ``QUALITY``: the TESS Science Data Products Description Document
  (EXP-TESS-ARC-ICD-0014), the table of cadence quality flags (Table 28 in the revision
  lightkurve cites); bit values 1 … 32768 (bits 0-15).
* Kepler and K2 ``SAP_QUALITY``: the Kepler Archive Manual (KDMC-10008-006), Table 2-3;
  bit values 1 … 1048576 (bits 0-20). Value 512 (bit 9) is not assigned a meaning there and is
  in no preset.

The presets are, bit for bit, lightkurve's ``TessQualityFlags`` / ``KeplerQualityFlags``
(``DEFAULT_BITMASK``, ``HARD_BITMASK``, ``HARDEST_BITMASK``; ``tests/test_tess_quality.py``
compares them): ``default`` names the cadences that are certainly useless, ``hard`` also the
ones that are often bad (cosmic rays, stray light, sensitivity drops), ``hardest`` every
named bit. A light-curve product can add bits of its own (eleanor's 2^17 and 2^18); those
join ``hardest`` only, as lightkurve does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from astropipe.errors import ConfigError

__all__ = [
    "QualityFlags",
    "TESS_QUALITY",
    "KEPLER_QUALITY",
    "QUALITY_FAMILIES",
    "PRESETS",
    "quality_bitmask",
    "quality_mask",
    "decode_quality",
]

#: The preset names, in increasing order of what they flag.
PRESETS = ("none", "default", "hard", "hardest")


@dataclass(frozen=True)
class QualityFlags:
    """The named QUALITY bits of one mission and the names of the bits of each preset.

    Parameters
    ----------
    mission
        Name used in messages ("TESS", "Kepler/K2").
    bits
        Bit value → (name, description); the description follows the mission document.
    default, hard
        Names of the bits in the ``default`` and ``hard`` presets (``hard`` includes
        ``default``); ``hardest`` is every named bit.
    document
        The document the bits come from.
    """

    mission: str
    bits: Mapping[int, tuple[str, str]]
    default: tuple[str, ...]
    hard: tuple[str, ...]
    document: str
    _by_name: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {name: value for value, (name, _) in self.bits.items()}
        for preset, names in (("default", self.default), ("hard", self.hard)):
            unknown = sorted(set(names) - set(by_name))
            if unknown:  # a typo here would silently weaken a preset
                raise ValueError(f"{self.mission} preset {preset!r} names unknown bits {unknown}")
        object.__setattr__(self, "bits", MappingProxyType(dict(self.bits)))
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))

    def value(self, name: str) -> int:
        """The bit value of the flag called ``name``."""
        return self._by_name[name]

    def _or(self, names: tuple[str, ...]) -> int:
        mask = 0
        for name in names:
            mask |= self._by_name[name]
        return mask

    @property
    def all_bits(self) -> int:
        """Every named bit (the ``hardest`` preset)."""
        mask = 0
        for value in self.bits:
            mask |= value
        return mask

    def preset(self, name: str) -> int:
        """The bitmask of preset ``name`` (one of :data:`PRESETS`)."""
        if name == "none":
            return 0
        if name == "default":
            return self._or(self.default)
        if name == "hard":
            return self._or(self.default) | self._or(self.hard)
        if name == "hardest":
            return self.all_bits
        raise ConfigError(
            f"quality preset {name!r} is not known; use one of {list(PRESETS)} or an integer "
            "bitmask."
        )


#: TESS ``QUALITY`` bits (TESS Science Data Products Description Document, EXP-TESS-ARC-ICD-0014).
TESS_QUALITY = QualityFlags(
    mission="TESS",
    document="TESS Science Data Products Description Document (EXP-TESS-ARC-ICD-0014)",
    bits={
        1: ("AttitudeTweak", "Attitude tweak"),
        2: ("SafeMode", "Safe mode"),
        4: ("CoarsePoint", "Spacecraft in coarse point"),
        8: ("EarthPoint", "Spacecraft in Earth point"),
        16: ("Argabrightening", "Argabrightening event"),
        32: ("Desat", "Reaction wheel desaturation event"),
        64: ("ApertureCosmic", "Cosmic ray in optimal aperture pixel"),
        128: ("ManualExclude", "Manual exclude"),
        256: ("Discontinuity", "Discontinuity corrected between this cadence and the next"),
        512: ("ImpulsiveOutlier", "Impulsive outlier removed before cotrending"),
        1024: ("CollateralCosmic", "Cosmic ray detected on collateral pixel row or column"),
        2048: ("Straylight", "Stray light from the Earth or Moon in camera FOV (set by MIT)"),
        4096: ("Straylight2", "Scattered light exclude (set by SPOC from background level)"),
        8192: ("PlanetSearchExclude", "Planet search exclude"),
        16384: ("BadCalibrationExclude", "Bad calibration exclude"),
        32768: ("InsufficientTargets", "Insufficient targets for error correction exclude"),
    },
    default=(
        "AttitudeTweak",
        "SafeMode",
        "CoarsePoint",
        "EarthPoint",
        "Argabrightening",
        "Desat",
        "ManualExclude",
        "ImpulsiveOutlier",
        "BadCalibrationExclude",
    ),
    hard=("ApertureCosmic", "CollateralCosmic", "Straylight", "Straylight2"),
)

#: Kepler and K2 ``SAP_QUALITY`` bits (Kepler Archive Manual KDMC-10008-006, Table 2-3).
KEPLER_QUALITY = QualityFlags(
    mission="Kepler/K2",
    document="Kepler Archive Manual (KDMC-10008-006), Table 2-3",
    bits={
        1: ("AttitudeTweak", "Attitude tweak"),
        2: ("SafeMode", "Safe mode"),
        4: ("CoarsePoint", "Spacecraft in coarse point"),
        8: ("EarthPoint", "Spacecraft in Earth point"),
        16: ("ZeroCrossing", "Reaction wheel zero crossing"),
        32: ("Desat", "Reaction wheel desaturation event"),
        64: ("Argabrightening", "Argabrightening event on all channels"),
        128: ("ApertureCosmic", "Cosmic ray in optimal aperture pixel"),
        256: ("ManualExclude", "Manual exclude"),
        1024: ("SensitivityDropout", "Sudden sensitivity dropout"),
        2048: ("ImpulsiveOutlier", "Impulsive outlier removed before cotrending"),
        4096: ("ArgabrighteningOnCCD", "Argabrightening event on this channel"),
        8192: ("CollateralCosmic", "Cosmic ray in collateral data"),
        16384: ("DetectorAnomaly", "Detector anomaly"),
        32768: ("NoFinePoint", "Spacecraft not in fine point"),
        65536: ("NoData", "No data collected"),
        131072: ("RollingBandInAperture", "Rolling band in optimal aperture"),
        262144: ("RollingBandInMask", "Rolling band in full mask"),
        524288: ("PossibleThrusterFiring", "Possible thruster firing (K2)"),
        1048576: ("ThrusterFiring", "Thruster firing (K2)"),
    },
    default=(
        "AttitudeTweak",
        "SafeMode",
        "CoarsePoint",
        "EarthPoint",
        "Desat",
        "ManualExclude",
        "DetectorAnomaly",
        "NoData",
        "ThrusterFiring",
    ),
    hard=("SensitivityDropout", "ApertureCosmic", "CollateralCosmic", "PossibleThrusterFiring"),
)

#: Quality-flag family name (as a column map names it) → its bits.
QUALITY_FAMILIES: Mapping[str, QualityFlags] = MappingProxyType(
    {"tess": TESS_QUALITY, "kepler": KEPLER_QUALITY}
)


def quality_bitmask(family: str, quality: str | int, *, extra_bits: int = 0) -> int:
    """The bitmask a quality setting stands for in one family of QUALITY bits.

    Parameters
    ----------
    family
        ``"tess"`` or ``"kepler"`` (Kepler and K2), see :data:`QUALITY_FAMILIES`.
    quality
        A preset name (:data:`PRESETS`) or a non-negative integer bitmask used as is.
    extra_bits
        The product's own bits beyond the mission's (eleanor: ``2**17 | 2**18``); they join
        the ``hardest`` preset only.

    Returns
    -------
    int
        Cadences with ``QUALITY & bitmask != 0`` are flagged.

    Raises
    ------
    ConfigError
        Unknown family or preset, or a negative/boolean bitmask.

    Examples
    --------
    >>> quality_bitmask("tess", "default")
    17087
    >>> quality_bitmask("kepler", "hard")
    1664431
    """
    try:
        flags = QUALITY_FAMILIES[family]
    except KeyError:
        raise ConfigError(
            f"quality family {family!r} is not known; use one of {sorted(QUALITY_FAMILIES)}."
        ) from None
    if isinstance(quality, bool) or not isinstance(quality, (int, str)):
        raise ConfigError(
            f"quality={quality!r} is neither a preset {list(PRESETS)} nor an integer bitmask."
        )
    if isinstance(quality, int):
        if quality < 0:
            raise ConfigError(f"quality bitmask {quality} is negative; use a value >= 0.")
        return quality
    mask = flags.preset(quality)
    return mask | extra_bits if quality == "hardest" else mask


def quality_mask(quality: np.ndarray, bitmask: int) -> np.ndarray:
    """True where a cadence has a bit of ``bitmask`` set (the cadences a preset flags)."""
    return (np.asarray(quality, dtype=np.int64) & np.int64(bitmask)) != 0


def decode_quality(value: int, family: str) -> list[str]:
    """The names of the bits set in one QUALITY value (unnamed bits as ``bit<n>``)."""
    flags = QUALITY_FAMILIES[family]
    names = []
    for bit in range(64):
        v = 1 << bit
        if value & v:
            names.append(flags.bits[v][0] if v in flags.bits else f"bit{bit}")
    return names
