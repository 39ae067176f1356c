"""The common light-curve table shared by every survey (ZTF alerts, ZTF DR, TESS).

One row per measurement. Magnitude surveys fill ``mag``/``mag_err``; flux surveys fill
``flux``/``flux_err``; an upper limit has ``is_upper_limit`` true and its limiting magnitude in
``limiting_mag``. ``mjd`` is the observation time as MJD (UTC for ZTF, TDB for TESS; the time
scale per survey is recorded in the file metadata). Rows are sorted by
``(object_id, band, mjd)`` and unique on ``(object_id, mjd, band)``.

``flags`` is an int64 bitmask in two halves:

* bits 0-31 (:data:`SURVEY_FLAGS_MASK`) hold the survey's own quality bits with their values
  unchanged: ZTF ``catflags`` (bits 0-15) for DR and IRSA rows, TESS ``QUALITY`` (bits 0-15, and
  bits 17-18 in eleanor HLSPs) and Kepler/K2 ``SAP_QUALITY`` (bits 0-20);
* bits 32-62 are astropipe's own (:data:`FLAG_NEGATIVE_DIFF`: an alert detection on a negative
  difference image; :data:`FLAG_QUALITY_MASKED`: a TESS/Kepler cadence with a quality bit of
  the configured preset set). Bit 63 stays unused so every value is a non-negative int64.

Survey bits are never shifted, so ``flags & SURVEY_FLAGS_MASK`` is the survey's own value.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "LIGHTCURVE_SCHEMA",
    "LIGHTCURVE_UNITS",
    "LIGHTCURVE_KEY",
    "ZTF_BANDS",
    "SURVEY_FLAG_BITS",
    "SURVEY_FLAGS_MASK",
    "ASTROPIPE_FLAGS_MASK",
    "FLAG_NEGATIVE_DIFF",
    "FLAG_QUALITY_MASKED",
    "FLAG_DC_MAGNITUDE",
    "to_lightcurve_table",
    "deduplicate",
]

log = logging.getLogger(__name__)

LIGHTCURVE_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("survey", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # alert | dr | irsa | spoc ...
        pa.field("band", pa.string(), nullable=False),
        pa.field("mjd", pa.float64(), nullable=False),
        pa.field("mag", pa.float64()),
        pa.field("mag_err", pa.float64()),
        pa.field("flux", pa.float64()),
        pa.field("flux_err", pa.float64()),
        pa.field("limiting_mag", pa.float64()),
        pa.field("is_upper_limit", pa.bool_(), nullable=False),
        pa.field("flags", pa.int64(), nullable=False),
        pa.field("ra", pa.float64()),
        pa.field("dec", pa.float64()),
    ]
)

LIGHTCURVE_UNITS = {
    "mjd": "d",
    "mag": "mag",
    "mag_err": "mag",
    "limiting_mag": "mag",
    "ra": "deg",
    "dec": "deg",
}

LIGHTCURVE_KEY = ("object_id", "mjd", "band")

#: Bits reserved for the survey's own flags: Kepler ``SAP_QUALITY`` already reaches bit 20, so
#: astropipe's bits start well clear of any survey's, at bit 32.
SURVEY_FLAG_BITS = 32
#: The survey's own bits of ``flags`` (bits 0-31).
SURVEY_FLAGS_MASK = (1 << SURVEY_FLAG_BITS) - 1
#: astropipe's bits of ``flags`` (bits 32-62; bit 63 unused so flags stay non-negative).
ASTROPIPE_FLAGS_MASK = ((1 << 63) - 1) & ~SURVEY_FLAGS_MASK

#: ``flags`` bit of a detection on a negative difference image (ZTF alert ``isdiffpos`` f).
FLAG_NEGATIVE_DIFF = 1 << SURVEY_FLAG_BITS
#: ``flags`` bit of a TESS/Kepler/K2 cadence whose QUALITY has a bit of the configured quality
#: preset set (``tess.quality``); the row is kept, downstream cleaning drops it.
FLAG_QUALITY_MASKED = 1 << (SURVEY_FLAG_BITS + 1)
#: ``flags`` bit of a ZTF alert detection whose ``mag``/``mag_err`` are the DC (apparent)
#: magnitude, reference flux plus difference flux (``ztf.alerts.dc_magnitudes``; see
#: :mod:`astropipe.ztf.dcmag`). Such a row never has :data:`FLAG_NEGATIVE_DIFF`: its magnitude
#: is a brightness even when the difference was negative.
FLAG_DC_MAGNITUDE = 1 << (SURVEY_FLAG_BITS + 2)

#: ZTF filter id → IRSA band name.
ZTF_BANDS = {1: "zg", 2: "zr", 3: "zi"}


def deduplicate(df: pd.DataFrame) -> pd.DataFrame:
    """Keep one row per ``(object_id, mjd, band)``: a detection beats an upper limit.

    The same epoch reaches us several times (a candidate repeated in later packets'
    ``prv_candidates``; two candids of one exposure, e.g. a source split in two on the
    difference image); detections carry more information than limits, and among detections of
    one source the better measurement — the smaller ``mag_err`` (then ``flux_err``) — wins, not
    the brighter one. Remaining ties go to the smaller ``mag`` and then to the first in sort
    order, so the result does not depend on input order.
    """
    if df.empty:
        return df
    ordered = df.sort_values(
        ["object_id", "band", "mjd", "is_upper_limit", "source", "mag_err", "flux_err", "mag"],
        kind="mergesort",
        na_position="last",
    )
    out = ordered.drop_duplicates(list(LIGHTCURVE_KEY), keep="first")
    dropped = len(df) - len(out)
    if dropped:
        log.info("deduplicated %d of %d light-curve rows on %s", dropped, len(df), LIGHTCURVE_KEY)
    return out.reset_index(drop=True)


def to_lightcurve_table(df: pd.DataFrame) -> pa.Table:
    """Coerce ``df`` to :data:`LIGHTCURVE_SCHEMA`, deduplicate, sort, and return an Arrow table.

    Missing optional columns are filled with nulls; ``flags`` defaults to 0 and
    ``is_upper_limit`` to false.
    """
    df = df.copy()
    for field in LIGHTCURVE_SCHEMA:
        if field.name not in df.columns:
            if field.name == "flags":
                df[field.name] = 0
            elif field.name == "is_upper_limit":
                df[field.name] = False
            elif pa.types.is_floating(field.type):
                df[field.name] = np.nan
            else:
                raise KeyError(f"light-curve frame lacks required column {field.name!r}")
    df = deduplicate(df[LIGHTCURVE_SCHEMA.names])
    df = df.sort_values(["object_id", "band", "mjd"], kind="mergesort").reset_index(drop=True)
    arrays = []
    for field in LIGHTCURVE_SCHEMA:
        col = df[field.name]
        if pa.types.is_floating(field.type):
            arrays.append(
                pa.array(col.to_numpy(dtype="float64", na_value=np.nan), from_pandas=True)
            )
        elif pa.types.is_integer(field.type):
            arrays.append(pa.array(col.to_numpy(dtype="int64"), type=field.type))
        elif pa.types.is_boolean(field.type):
            arrays.append(pa.array(col.to_numpy(dtype=bool), type=field.type))
        else:
            arrays.append(pa.array(col.astype(str).tolist(), type=field.type))
    return pa.Table.from_arrays(arrays, schema=LIGHTCURVE_SCHEMA)
