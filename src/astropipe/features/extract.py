"""The features entry point: cleaned points in, one row of features per ``(object_id, band)`` out.

This is the interface between the cleaning steps (``astropipe.features.clean``) and the feature
code. The cleaning side hands over a long table of points in one unit system per group:

========== ========= ==========================================================================
column     dtype     meaning
========== ========= ==========================================================================
object_id  str       the object
band       str       the passband (ZTF ``zg``/``zr``/``zi``, ``TESS``, ``Kepler``...)
survey     str       ``ZTF``, ``TESS``, ``Kepler``, ``K2`` (as the ingests write it)
mjd        float64   time of the point (d)
value      float64   magnitude (``kind == 'mag'``) or flux (``kind == 'flux'``)
err        float64   1-sigma error of ``value`` (NaN when unknown)
kind       str       ``'mag'`` or ``'flux'``: fixes which way is brighter
========== ========= ==========================================================================

Rows may come in any order; rows with a non-finite value or time are ignored. Every
``(object_id, band)`` must have one ``kind`` (a band mixing magnitudes and fluxes is refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from astropipe.errors import AstropipeError
from astropipe.features.cdpp import CdppConfig, group_cdpp
from astropipe.features.periodogram import PERIODOGRAM_COLUMNS, PeriodogramConfig, lomb_scargle
from astropipe.features.stats import FEATURE_COLUMNS, group_statistics

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

    periodogram: PeriodogramConfig = field(default_factory=PeriodogramConfig)
    cdpp: CdppConfig = field(default_factory=CdppConfig)

    @classmethod
    def common_only(cls) -> ExtractConfig:
        """Only the plain statistics (what light-curve also computes): for benchmarks."""
        return cls(periodogram=PeriodogramConfig(enabled=False), cdpp=CdppConfig(enabled=False))


def _check_points(points: pd.DataFrame) -> np.ndarray:
    """Refuse a points table off the interface; return ``kind == 'flux'`` per row."""
    missing = [c for c in POINT_COLUMNS if c not in points.columns]
    if missing:
        raise FeaturesInputError(
            f"features: the points table lacks column(s) {missing}; expected {list(POINT_COLUMNS)}"
            " (see astropipe.features.extract)."
        )
    kind = points["kind"]
    is_flux = (kind == "flux").to_numpy(dtype=bool, na_value=False)
    is_mag = (kind == "mag").to_numpy(dtype=bool, na_value=False)
    if not (is_flux | is_mag).all():
        bad = sorted({str(k) for k in kind[~(is_flux | is_mag)].unique()})
        raise FeaturesInputError(
            f"features: kind {bad} is not valid; expected one of {list(KINDS)}."
        )
    return is_flux


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
    is_flux = _check_points(points)
    keep = np.isfinite(points["value"].to_numpy(np.float64)) & np.isfinite(
        points["mjd"].to_numpy(np.float64)
    )
    if not keep.all():
        points, is_flux = points[keep], is_flux[keep]
    key, obj_of_key, band_of_key = _group_keys(points)
    t = points["mjd"].to_numpy(np.float64)
    if len(key) and not _is_sorted(key, t):
        order = np.lexsort((t, key))  # stable: equal times keep their input order
        key, t, is_flux = key[order], t[order], is_flux[order]
    else:
        order = None

    def column(name: str) -> np.ndarray:
        x = points[name].to_numpy(np.float64)
        return x if order is None else x[order]

    starts = np.flatnonzero(np.diff(key, prepend=-1)) if len(key) else np.zeros(0, np.intp)
    counts = np.diff(np.append(starts, len(key)))
    n_flux = np.add.reduceat(is_flux.astype(np.intp), starts) if len(key) else counts
    mixed = (n_flux > 0) & (n_flux < counts)
    if mixed.any():
        g = int(key[starts[np.flatnonzero(mixed)[0]]])
        raise FeaturesInputError(
            f"features: {obj_of_key[g]} band {band_of_key[g]} mixes kinds 'mag' and 'flux'; "
            "give each (object_id, band) one kind (convert or split the band)."
        )
    value, err = column("value"), column("err")
    big = counts >= min_points
    if not big.all():
        rows = np.repeat(big, counts)
        key, t, value, err, is_flux = key[rows], t[rows], value[rows], err[rows], is_flux[rows]
        counts = counts[big]
        # no group left (every one below min_points): no start at all, not a start at 0
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)[: len(counts)]
    group_key = key[starts]
    feats = _chunked_statistics(t, value, err, is_flux[starts], starts)
    pg = cfg.periodogram
    if pg.enabled:
        feats.update(lomb_scargle(t, value, err, starts, cfg=pg))
    else:
        feats.update({c: np.full(len(starts), np.nan) for c in PERIODOGRAM_COLUMNS})
    feats["cdpp"] = (
        group_cdpp(t, value, is_flux[starts], starts, cfg=cfg.cdpp)
        if cfg.cdpp.enabled
        else np.full(len(starts), np.nan)
    )
    out = {
        "object_id": obj_of_key[group_key],
        "band": band_of_key[group_key],
        **feats,
    }
    return pd.DataFrame(out)


def _group_keys(points: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An integer key per row, increasing with ``(object_id, band)``, and the names per key.

    Returns ``key`` and two object arrays indexed by key: its object id and its band. Rows
    already sorted by ``(object_id, band)`` (the cleaned table is) are numbered by counting
    boundaries, two vectorised string comparisons; anything else goes through
    ``factorize(sort=True)``, whose codes follow the sorted order of the strings.
    """
    obj, band = points["object_id"], points["band"]
    if len(points) > 1 and not (obj.hasnans or band.hasnans):
        o, b = pa.array(obj.array), pa.array(band.array)
        o_new = _differs_from_previous(o)
        b_new = _differs_from_previous(b)
        # Sorted means no step down where the object changes, nor where only the band does:
        # compare only those few pairs.
        if not (_steps_down(o, o_new) or _steps_down(b, b_new & ~o_new)):
            new = o_new | b_new
            key = np.concatenate([[0], np.cumsum(new, dtype=np.int64)])
            starts = np.flatnonzero(np.concatenate([[True], new]))
            return key, _names(o, starts), _names(b, starts)
    obj_code, obj_names = pd.factorize(obj, sort=True)
    band_code, band_names = pd.factorize(band, sort=True)
    nb = max(len(band_names), 1)
    key = obj_code.astype(np.int64) * nb + band_code
    obj_names = np.asarray(obj_names, dtype=object)
    band_names = np.asarray(band_names, dtype=object)
    return key, np.repeat(obj_names, nb), np.tile(band_names, len(obj_names))


#: Points per call of :func:`group_statistics`: its ~100 temporaries then stay in the CPU
#: cache instead of streaming through memory (every value is per group, so the chunking does
#: not change a bit; a group longer than this is one chunk of its own).
CHUNK_POINTS = 1 << 16


def _chunked_statistics(
    t: np.ndarray, value: np.ndarray, err: np.ndarray, is_flux: np.ndarray, starts: np.ndarray
) -> dict[str, np.ndarray]:
    """:func:`group_statistics` over runs of whole groups of about :data:`CHUNK_POINTS`."""
    if len(t) <= CHUNK_POINTS:
        return group_statistics(t, value, err, is_flux, starts)
    # chunk boundaries: the first group starting at or after each multiple of CHUNK_POINTS
    cuts = np.unique(np.searchsorted(starts, np.arange(0, len(t), CHUNK_POINTS)))
    cuts = cuts[cuts < len(starts)]  # past the last start: inside the last (long) group
    bounds = np.append(cuts, len(starts))
    parts = []
    for g0, g1 in zip(bounds[:-1], bounds[1:], strict=True):
        a = starts[g0]
        b = starts[g1] if g1 < len(starts) else len(t)
        parts.append(
            group_statistics(t[a:b], value[a:b], err[a:b], is_flux[g0:g1], starts[g0:g1] - a)
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _differs_from_previous(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``a[i + 1] != a[i]`` for every i, as a numpy bool array."""
    ne = pc.not_equal(a[1:], a[:-1])
    return np.asarray(ne.to_numpy(zero_copy_only=False), dtype=bool)


def _steps_down(a: pa.Array | pa.ChunkedArray, where: np.ndarray) -> bool:
    """Whether ``a[i + 1] < a[i]`` at any i where ``where`` is true."""
    idx = np.flatnonzero(where)
    if not len(idx):
        return False
    return bool(pc.any(pc.less(pc.take(a, idx + 1), pc.take(a, idx))).as_py())


def _names(a: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> np.ndarray:
    return np.asarray(pc.take(a, rows).to_pylist(), dtype=object)


def _is_sorted(key: np.ndarray, t: np.ndarray) -> bool:
    """True when rows are sorted by key, then by time within a key."""
    dk = np.diff(key)
    return bool((dk >= 0).all() and ((dk > 0) | (np.diff(t) >= 0)).all())


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


#: Every output column after ``object_id`` and ``band``, in order.
OUTPUT_COLUMNS = (*FEATURE_COLUMNS, *PERIODOGRAM_COLUMNS, "cdpp")
__all__ += ["FEATURE_COLUMNS", "OUTPUT_COLUMNS"]
