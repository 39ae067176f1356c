"""Light-curve features, one row per (object_id, band), computed group-wise without row loops."""

from astropipe.features.stats import FEATURE_COLUMNS, compute_features

__all__ = ["FEATURE_COLUMNS", "compute_features"]
