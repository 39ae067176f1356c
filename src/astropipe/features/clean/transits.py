"""Masks of known transits (an ephemeris) and of user-given time ranges.

Points inside a mask stay in the light curve; they are only left out of the baseline fit, so
Savitzky–Golay flattening does not eat the transit (the most common complaint of lightkurve's
users). The phase arithmetic is ``− × ÷`` and ``rint`` only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from astropipe.errors import InputFileError

__all__ = ["transit_mask", "range_mask", "catalog_ephemerides", "BKJD_TO_MJD", "BJD_TO_MJD"]

#: MJD = BKJD + 54832.5 (BKJD = BJD − 2454833; MJD = JD − 2400000.5).
BKJD_TO_MJD = 2454833.0 - 2400000.5
#: MJD = BJD − 2400000.5.
BJD_TO_MJD = -2400000.5


def transit_mask(
    time: np.ndarray, *, period: float, epoch: float, duration_days: float, factor: float = 1.5
) -> np.ndarray:
    """True within ``factor × duration / 2`` of a mid-transit ``epoch + n·period``."""
    time = np.asarray(time, dtype=np.float64)
    n = np.rint((time - epoch) / period)
    return np.abs(time - epoch - n * period) <= factor * duration_days / 2.0


def range_mask(time: np.ndarray, ranges: Iterable[tuple[float, float]]) -> np.ndarray:
    """True for times inside any ``[start, end]``."""
    time = np.asarray(time, dtype=np.float64)
    out = np.zeros(len(time), dtype=bool)
    for start, end in ranges:
        out |= (time >= start) & (time <= end)
    return out


def catalog_ephemerides(catalogs_dir: str | Path) -> pd.DataFrame:
    """Ephemerides of the KOI and TOI entries that ``objects.parquet`` links to a light curve.

    Returns a table ``object_id, period (d), epoch (MJD, TDB), duration_hours`` (rows with a
    missing value are left out). KOI epochs are BKJD, TOI epochs BJD; both TDB.

    Raises
    ------
    InputFileError
        ``objects.parquet`` is missing (run ingest_catalogs first, or set
        ``features.clean.detrend.transits.from_catalogs: false``).
    """
    root = Path(catalogs_dir)
    objects_path = root / "objects.parquet"
    if not objects_path.is_file():
        raise InputFileError(
            f"{objects_path}: no objects table; run ingest_catalogs first or set "
            "features.clean.detrend.transits.from_catalogs=false."
        )
    objects = pd.read_parquet(objects_path, columns=["catalog", "catalog_id", "object_id"])
    frames = []
    specs = {
        "koi": ("kepoi_name", "koi_period", "koi_time0bk", "koi_duration", BKJD_TO_MJD),
        "toi": ("toi", "pl_orbper", "pl_tranmid", "pl_trandurh", BJD_TO_MJD),
    }
    for name, (key, per, t0, dur, offset) in specs.items():
        path = root / f"{name}.parquet"
        if not path.is_file():
            continue
        cat = pd.read_parquet(path, columns=[key, per, t0, dur])
        cat[key] = cat[key].astype(str)
        linked = objects[objects["catalog"] == name].merge(
            cat, left_on="catalog_id", right_on=key, how="inner"
        )
        frames.append(
            pd.DataFrame(
                {
                    "object_id": linked["object_id"],
                    "period": linked[per].astype(np.float64),
                    "epoch": linked[t0].astype(np.float64) + offset,
                    "duration_hours": linked[dur].astype(np.float64),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["object_id", "period", "epoch", "duration_hours"])
    out = pd.concat(frames, ignore_index=True).dropna()
    out = out[(out["period"] > 0) & (out["duration_hours"] > 0)]
    return out.sort_values(["object_id", "epoch"], kind="mergesort").reset_index(drop=True)
