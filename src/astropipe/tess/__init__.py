"""TESS, Kepler and K2 light curves: FITS reader, column maps, quality presets.

The ingest_tess stage (to be wired in dvc.yaml) reads every light-curve FITS with
:func:`read_lightcurves`; see docs/ingest_tess.md.
"""

from astropipe.tess.columns import (
    DEFAULT_LAYOUTS,
    TESS_LIGHTCURVE_SCHEMA,
    TESS_LIGHTCURVE_UNITS,
    ColumnMap,
    FluxColumns,
)
from astropipe.tess.config import TessReadConfig
from astropipe.tess.quality import KEPLER_QUALITY, PRESETS, TESS_QUALITY, quality_bitmask
from astropipe.tess.reader import ReadResult, file_info, read_lightcurve_fits, read_lightcurves

__all__ = [
    "ColumnMap",
    "FluxColumns",
    "DEFAULT_LAYOUTS",
    "TESS_LIGHTCURVE_SCHEMA",
    "TESS_LIGHTCURVE_UNITS",
    "TessReadConfig",
    "KEPLER_QUALITY",
    "TESS_QUALITY",
    "PRESETS",
    "quality_bitmask",
    "read_lightcurve_fits",
    "read_lightcurves",
    "file_info",
    "ReadResult",
]
