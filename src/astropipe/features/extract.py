"""The features entry point: cleaned points in, one row of features per ``(object_id, band)`` out.

This is the interface between the cleaning steps (``astropipe.features.clean``) and the feature
code. The cleaning side hands over a long table of points in one unit system per group:

========== ========= ==========================================================================
column     dtype     meaning
========== ========= ==========================================================================
object_id  str       the object
band       str       the passband (ZTF ``zg``/``zr``/``zi``, ``TESS``, ``Kepler``...)
survey     str       ``ztf``, ``tess``, ``kepler``... (carried to the output)
mjd        float64   time of the point (d)
value      float64   magnitude (``kind == 'mag'``) or flux (``kind == 'flux'``)
err        float64   1-sigma error of ``value`` (NaN when unknown)
kind       str       ``'mag'`` or ``'flux'``: fixes which way is brighter
========== ========= ==========================================================================

Rows may come in any order; NaN values are ignored. Every ``(object_id, band)`` must have one
``kind`` (a band mixing magnitudes and fluxes is refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from astropipe.errors import AstropipeError
from astropipe.features.stats import FEATURE_COLUMNS, group_slices, group_statistics

__all__ = [
    "POINT_COLUMNS",
    "KINDS",
    "ExtractConfig",
    "FeaturesInputError",
    "compute_features",
    "points_from_lightcurves",
]

#: Columns :func:`compute_features` reads.
POINT_COLUMNS = ("object_id", "band", "survey", "mjd", "value", "err", "kind")
#: Values of ``kind``.
KINDS = ("mag", "flux")


class FeaturesInputError(AstropipeError, ValueError):
    """The points handed to :func:`compute_features` do not follow the interface."""


@dataclass(frozen=True)
class ExtractConfig:
    """Options of the feature extraction (``features.extract`` in params.yaml)."""


def _check_points(points: pd.DataFrame) -> None:
    missing = [c for c in POINT_COLUMNS if c not in points.columns]
    if missing:
        raise FeaturesInputError(
            f"features: the points table lacks column(s) {missing}; expected {list(POINT_COLUMNS)}"
            " (see astropipe.features.extract)."
        )
    bad = sorted(set(points["kind"].unique()) - set(KINDS))
    if bad:
        raise FeaturesInputError(
            f"features: kind {bad} is not valid; expected one of {list(KINDS)}."
        )


def compute_features(
    points: pd.DataFrame, *, cfg: ExtractConfig | None = None, min_points: int = 3
) -> pd.DataFrame:
    """Compute the features of every ``(object_id, band)`` group of ``points``.

    Parameters
    ----------
    points
        Cleaned points with the columns of :data:`POINT_COLUMNS` (see the module docstring).
    cfg
        Extraction options (``features.extract``); the defaults when omitted.
    min_points
        Groups with fewer finite values get no row (``features.min_points``).

    Returns
    -------
    pandas.DataFrame
        One row per group with at least ``min_points`` points, sorted by
        ``(object_id, band)``: ``object_id``, ``band`` and :data:`FEATURE_COLUMNS`.

    Raises
    ------
    FeaturesInputError
        A column is missing, a ``kind`` is unknown, or a group mixes kinds.
    """
    cfg = cfg or ExtractConfig()
    _check_points(points)
    df = points.loc[np.isfinite(points["value"].to_numpy(np.float64)), list(POINT_COLUMNS)]
    df = df.sort_values(["object_id", "band", "mjd"], kind="mergesort").reset_index(drop=True)
    groups = group_slices(df[["object_id", "band"]])
    runs = group_slices(df[["object_id", "band", "kind"]])
    if len(runs) != len(groups):
        row = df.iloc[int(np.setdiff1d(runs, groups)[0])]
        raise FeaturesInputError(
            f"features: {row['object_id']} band {row['band']} mixes kinds 'mag' and 'flux'; "
            "give each (object_id, band) one kind (convert or split the band)."
        )
    return group_statistics(df, min_points=min_points)


def points_from_lightcurves(lc: pd.DataFrame) -> pd.DataFrame:
    """Points (:data:`POINT_COLUMNS`) from rows of the common light-curve table.

    A row with a finite ``mag`` becomes a magnitude point; otherwise its ``flux`` is used. Rows
    with neither give a NaN value (ignored by :func:`compute_features`).
    """
    mag = lc["mag"].to_numpy(np.float64)
    is_mag = np.isfinite(mag)
    return pd.DataFrame(
        {
            "object_id": lc["object_id"].to_numpy(),
            "band": lc["band"].to_numpy(),
            "survey": lc["survey"].to_numpy(),
            "mjd": lc["mjd"].to_numpy(np.float64),
            "value": np.where(is_mag, mag, lc["flux"].to_numpy(np.float64)),
            "err": np.where(
                is_mag, lc["mag_err"].to_numpy(np.float64), lc["flux_err"].to_numpy(np.float64)
            ),
            "kind": np.where(is_mag, "mag", "flux"),
        }
    )


# FEATURE_COLUMNS is re-exported so callers import the interface from one module.
__all__ += ["FEATURE_COLUMNS"]
