"""The per-point ``clean_mask`` column: which cleaning step removed a point, and why.

One bit per step. A point is removed by the first step that rejects it, so exactly one of the
:data:`REMOVED` bits is set on a removed point and none on a kept one. The :data:`INFO` bits
mark kept points that a step treated specially (left out of the baseline fit).
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "EXCLUDED",
    "NONFINITE",
    "QUALITY",
    "OUTLIER",
    "SHORT_SEGMENT",
    "TRANSIT_MASKED",
    "FIT_CLIPPED",
    "REMOVED",
    "INFO",
    "STEP_BITS",
    "describe",
]

EXCLUDED = 1  # upper limit, or a bit of features.exclude_flags (negative difference image)
NONFINITE = 2  # value or time NaN/inf
QUALITY = 4  # a quality bit of the configured preset (TESS/Kepler QUALITY, ZTF catflags)
OUTLIER = 8  # rejected by the outlier step
SHORT_SEGMENT = 16  # in a segment shorter than gaps.min_points_per_segment
TRANSIT_MASKED = 256  # kept; inside a known transit or user mask, left out of the trend fit
FIT_CLIPPED = 512  # kept; left out of the final Savitzky-Golay fit by its sigma mask

#: Bits meaning "removed".
REMOVED = EXCLUDED | NONFINITE | QUALITY | OUTLIER | SHORT_SEGMENT
#: Bits that only describe a kept point.
INFO = TRANSIT_MASKED | FIT_CLIPPED

#: Step name → bit, in pipeline order (also written to the Parquet metadata).
STEP_BITS = MappingProxyType(
    {
        "excluded": EXCLUDED,
        "quality": QUALITY,
        "nonfinite": NONFINITE,
        "outliers": OUTLIER,
        "short_segment": SHORT_SEGMENT,
        "transit_masked": TRANSIT_MASKED,
        "fit_clipped": FIT_CLIPPED,
    }
)


def describe(value: int) -> list[str]:
    """The step names whose bits are set in ``value``."""
    return [name for name, bit in STEP_BITS.items() if value & bit]
