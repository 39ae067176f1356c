"""Light-curve features, one row per (object_id, band), computed group-wise without row loops.

The entry point is :func:`compute_features` (``astropipe.features.extract``): cleaned points
(``object_id, band, survey, mjd, value, err, kind``) in, one row per group out.
"""

from astropipe.features.extract import (
    FEATURE_COLUMNS,
    POINT_COLUMNS,
    ExtractConfig,
    compute_features,
    points_from_lightcurves,
)

__all__ = [
    "FEATURE_COLUMNS",
    "POINT_COLUMNS",
    "ExtractConfig",
    "compute_features",
    "points_from_lightcurves",
]
