"""Light-curve cleaning: quality, outliers, gaps, baseline removal, denoising, normalisation.

The stage (``astropipe.features.stage``) calls :func:`clean_table` on each batch of whole
objects of the light-curve tables (:func:`clean_lightcurves` is the same on one table, with its
summary) and writes every point, with the ``clean_mask`` bits of :mod:`.masks` saying which
step removed it, to ``data/interim/lightcurves_clean.parquet``; the kept points go on to the
features. The array verbs are usable on their own: :func:`flatten` (lightkurve's, deterministic),
:func:`biweight_trend`, :func:`sigma_clip_mask` and friends, :func:`normalise`,
:func:`wavelet_denoise`.
"""

from astropipe.features.clean.config import CleanConfig
from astropipe.features.clean.denoise import wavelet_denoise
from astropipe.features.clean.detrend import FlattenResult, biweight_trend, flatten
from astropipe.features.clean.gaps import segment_ids, short_segments
from astropipe.features.clean.normalise import normalise
from astropipe.features.clean.outliers import (
    iqr_mask,
    isolation_forest_mask,
    mad_mask,
    modified_z_mask,
    outlier_mask,
    sigma_clip_mask,
    vote,
)
from astropipe.features.clean.pipeline import (
    CLEAN_COLUMNS,
    clean_curve,
    clean_lightcurves,
    clean_table,
)
from astropipe.features.clean.savgol import savgol_smooth
from astropipe.features.clean.transits import catalog_ephemerides, range_mask, transit_mask

__all__ = [
    "CleanConfig",
    "CLEAN_COLUMNS",
    "FlattenResult",
    "biweight_trend",
    "catalog_ephemerides",
    "clean_curve",
    "clean_lightcurves",
    "clean_table",
    "flatten",
    "iqr_mask",
    "isolation_forest_mask",
    "mad_mask",
    "modified_z_mask",
    "normalise",
    "outlier_mask",
    "range_mask",
    "savgol_smooth",
    "segment_ids",
    "short_segments",
    "sigma_clip_mask",
    "transit_mask",
    "vote",
    "wavelet_denoise",
]
