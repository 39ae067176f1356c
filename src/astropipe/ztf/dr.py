"""ZTF data-release light curves from IRSA's bulk Parquet files.

The bulk files (``https://irsa.ipac.caltech.edu/data/ZTF/lc/lc_drNN/``) hold one row per
object and filter, with the epochs in list columns (``hmjd``, ``mag``, ``magerr``,
``clrcoeff``, ``catflags``). :func:`read_dr_lightcurves` explodes them, vectorised, into the
common light-curve frame of :mod:`astropipe.lightcurve`.

Time
----
The DR gives ``hmjd``: the heliocentric MJD (UTC-based) of the exposure midpoint. The common
frame holds ``mjd``: the MJD (UTC) of the **start** of the exposure as seen at Palomar, the
convention of the alert packets (``candidate.jd``) and of the ``mjd`` column of IRSA's
``nph_light_curves`` service. So ``mjd = hmjd - ltt_helio(ra, dec, t_mid) - exptime / 2``,
where ``ltt_helio`` is astropy's heliocentric light-travel time at the Samuel Oschin telescope
(``EarthLocation`` from the explicit coordinates below; no site registry lookup) and
``exptime`` is the survey's standard 30 s (the bulk files do not carry it; a 300 s exposure
would be placed 135 s late). A live IRSA row checks the whole chain: hjd 2458202.8577286243,
mjd 58202.353159699996 at (209.9900551, 29.9976258) agree with this conversion to 0.3 ms.
IERS tables are used as shipped with astropy (``auto_download`` off), so nothing touches the
network.

Quality
-------
Epochs with ``catflags & bad_catflags_mask`` non-zero are dropped (as IRSA's
``BAD_CATFLAGS_MASK`` does); the fraction dropped is logged, with a warning above 20 %.
``flags`` keeps ``catflags`` for the epochs kept. See the ZTF Science Data System
Explanatory Supplement, section 10.3, for the bits (32768 = 2**15: bad/unreliable epoch).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import iers

from astropipe.errors import InputFileError, MissingInputError
from astropipe.lightcurve import LIGHTCURVE_SCHEMA, ZTF_BANDS
from astropipe.provenance import relpath, sha256_file
from astropipe.ztf.config import DrConfig

__all__ = [
    "PALOMAR",
    "DR_EXPTIME_S",
    "DR_COLUMNS",
    "hmjd_to_mjd",
    "mjd_to_hmjd",
    "explode_dr_table",
    "read_dr_file",
    "read_dr_lightcurves",
]

log = logging.getLogger(__name__)

#: The Samuel Oschin 48-inch telescope, Palomar (explicit, so no site-registry download).
PALOMAR = EarthLocation.from_geodetic(lon=-116.8650 * u.deg, lat=33.3563 * u.deg, height=1712 * u.m)

#: Standard ZTF exposure time; ``hmjd`` is at mid-exposure, ``mjd`` at the start.
DR_EXPTIME_S = 30.0

#: Columns a bulk file must have.
DR_COLUMNS = ("objectid", "filterid", "objra", "objdec", "hmjd", "mag", "magerr", "catflags")
_LIST_COLUMNS = ("hmjd", "mag", "magerr", "catflags")
_WARN_DROPPED = 0.2
_SECONDS_PER_DAY = 86400.0
_GRID_D = 1e-3
_AXES = SkyCoord(ra=[0.0, 90.0, 0.0] * u.deg, dec=[0.0, 0.0, 90.0] * u.deg)


def _observer_vector(mjd_utc: np.ndarray) -> np.ndarray:
    """Sun → Palomar vector over c (days), ICRS axes, shape (n, 3), from astropy.

    The heliocentric light-travel time is linear in the unit vector to the source
    (``ltt = r_obs · n / c``), so astropy's ``light_travel_time`` towards the three ICRS axes
    gives the vector's components exactly.
    """
    with iers.conf.set_temp("auto_download", False):
        t = Time(mjd_utc[:, None], format="mjd", scale="utc", location=PALOMAR)
        return t.light_travel_time(_AXES, kind="heliocentric").to_value(u.day)


def _ltt_days(mjd_utc: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Heliocentric light-travel time (days) towards (ra, dec) at Palomar, vectorised.

    astropy evaluates the Earth's ephemeris and rotation once per distinct time; a DR file
    has ~10^5 distinct epoch times, so the observer vector is evaluated on a 0.001-d grid
    and interpolated linearly (error < 1e-12 d: the vector's curvature is the orbit and the
    21-ms diurnal term).
    """
    mjd_utc = np.asarray(mjd_utc, dtype="float64")
    if mjd_utc.size == 0:
        return np.zeros(0)
    cell = np.floor(mjd_utc / _GRID_D)
    nodes, inverse = np.unique(np.concatenate([cell, cell + 1]), return_inverse=True)
    vec = _observer_vector(nodes * _GRID_D)
    lo, hi = vec[inverse[: cell.size]], vec[inverse[cell.size :]]
    w = (mjd_utc / _GRID_D - cell)[:, None]
    obs = lo + w * (hi - lo)
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    cos_dec = np.cos(dec_r)
    # The dot product is spelled out so its order is fixed (einsum may reorder or fuse it).
    return (
        obs[:, 0] * (cos_dec * np.cos(ra_r))
        + obs[:, 1] * (cos_dec * np.sin(ra_r))
        + obs[:, 2] * np.sin(dec_r)
    )


def hmjd_to_mjd(
    hmjd: np.ndarray, ra: np.ndarray, dec: np.ndarray, *, exptime_s: float = 0.0
) -> np.ndarray:
    """Heliocentric MJD (UTC-based) → MJD (UTC) at Palomar, vectorised.

    Parameters
    ----------
    hmjd
        Heliocentric MJD of the exposure midpoint, days.
    ra, dec
        ICRS position of each epoch's object, degrees (broadcast against ``hmjd``).
    exptime_s
        Exposure time in seconds; the result is moved back by half of it, to the start of the
        exposure. 0 returns the midpoint.

    Returns
    -------
    numpy.ndarray
        MJD (UTC). Two fixed-point steps make ``mjd_to_hmjd(result) == hmjd`` to ~1e-10 d
        (the light-travel time changes by < 1e-4 d per day).
    """
    hmjd = np.atleast_1d(np.asarray(hmjd, dtype="float64"))
    ra = np.broadcast_to(np.asarray(ra, dtype="float64"), hmjd.shape)
    dec = np.broadcast_to(np.asarray(dec, dtype="float64"), hmjd.shape)
    mid = hmjd - _ltt_days(hmjd, ra, dec)
    mid = hmjd - _ltt_days(mid, ra, dec)
    return mid - 0.5 * exptime_s / _SECONDS_PER_DAY


def mjd_to_hmjd(
    mjd: np.ndarray, ra: np.ndarray, dec: np.ndarray, *, exptime_s: float = 0.0
) -> np.ndarray:
    """MJD (UTC) of the exposure start at Palomar → heliocentric MJD of its midpoint."""
    mid = np.atleast_1d(np.asarray(mjd, dtype="float64")) + 0.5 * exptime_s / _SECONDS_PER_DAY
    ra = np.broadcast_to(np.asarray(ra, dtype="float64"), mid.shape)
    dec = np.broadcast_to(np.asarray(dec, dtype="float64"), mid.shape)
    return mid + _ltt_days(mid, ra, dec)


def read_dr_file(path: str | os.PathLike[str]) -> pa.Table:
    """Read the columns we use from one bulk file, with a clear error for a bad file."""
    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(
            f"{path}: not a readable Parquet file ({exc.__class__.__name__}: {exc}); "
            "re-download it from IRSA (it may be truncated)."
        ) from None
    missing = [c for c in DR_COLUMNS if c not in schema.names]
    if missing:
        raise InputFileError(
            f"{path}: missing column(s) {missing}; an IRSA DR bulk light-curve file has "
            f"{list(DR_COLUMNS)} (found {schema.names}); is this the right file?"
        )
    try:
        return pq.read_table(path, columns=list(DR_COLUMNS))
    except (pa.ArrowException, OSError) as exc:
        raise InputFileError(
            f"{path}: cannot read the data ({exc.__class__.__name__}: {exc}); the file is "
            "damaged or truncated; re-download it from IRSA."
        ) from None


def explode_dr_table(
    table: pa.Table, *, bad_catflags_mask: int, where: str = "DR table"
) -> pd.DataFrame:
    """One row per (object, filter) with list columns → one row per epoch, common schema.

    Parameters
    ----------
    table
        Columns :data:`DR_COLUMNS` (list columns for the epochs).
    bad_catflags_mask
        Epochs with ``catflags & mask != 0`` are dropped.
    where
        Name used in error messages (the file).

    Returns
    -------
    pandas.DataFrame
        The common light-curve columns (``source="dr"``), in file order.
    """
    lengths = [pc.fill_null(pc.list_value_length(table[c]), 0) for c in _LIST_COLUMNS]
    for name, n in zip(_LIST_COLUMNS[1:], lengths[1:], strict=True):
        if table.num_rows and not pc.all(pc.equal(lengths[0], n)).as_py():
            raise InputFileError(
                f"{where}: list column {name!r} differs in length from 'hmjd' in some rows; "
                "the file is inconsistent; re-download it."
            )
    parent = pc.list_parent_indices(table["hmjd"]).to_numpy()
    flat = {c: pc.list_flatten(table[c]).to_numpy(zero_copy_only=False) for c in _LIST_COLUMNS}
    objectid = table["objectid"].to_numpy()[parent]
    filterid = table["filterid"].to_numpy().astype("int64")[parent]
    ra = table["objra"].to_numpy().astype("float64")[parent]
    dec = table["objdec"].to_numpy().astype("float64")[parent]
    catflags = flat["catflags"].astype("int64")

    unknown = sorted(set(np.unique(filterid).tolist()) - set(ZTF_BANDS))
    if unknown:
        raise InputFileError(
            f"{where}: unknown filterid value(s) {unknown}; ZTF uses {sorted(ZTF_BANDS)} (g, r, i)."
        )
    keep = (catflags & int(bad_catflags_mask)) == 0
    n, kept = len(keep), int(keep.sum())
    if n:
        frac = 1 - kept / n
        level = logging.WARNING if frac > _WARN_DROPPED else logging.INFO
        log.log(
            level,
            "%s: dropped %d of %d epochs (%.1f%%) with catflags & %d",
            where, n - kept, n, 100 * frac, bad_catflags_mask,
        )  # fmt: skip
    hmjd = flat["hmjd"].astype("float64")[keep]
    mjd = hmjd_to_mjd(hmjd, ra[keep], dec[keep], exptime_s=DR_EXPTIME_S)
    bands = np.array([ZTF_BANDS[k] for k in sorted(ZTF_BANDS)], dtype=object)
    frame = pd.DataFrame(
        {
            "object_id": objectid[keep].astype(str).astype(object),
            "survey": "ZTF",
            "source": "dr",
            "band": bands[filterid[keep] - 1],
            "mjd": mjd,
            "mag": flat["mag"].astype("float64")[keep],
            "mag_err": flat["magerr"].astype("float64")[keep],
            "flux": np.nan,
            "flux_err": np.nan,
            "limiting_mag": np.nan,
            "is_upper_limit": False,
            "flags": catflags[keep],
            "ra": ra[keep],
            "dec": dec[keep],
        }
    )
    return frame[LIGHTCURVE_SCHEMA.names]


def read_dr_lightcurves(cfg: DrConfig) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read every ``*.parquet`` below ``cfg.path`` into the common light-curve frame.

    Parameters
    ----------
    cfg
        ``ztf.dr``: the directory (or a single file) and the bad-catflags mask.

    Returns
    -------
    frame : pandas.DataFrame
        Common light-curve columns, ``source="dr"``, sorted by (object_id, band, mjd). Not
        yet deduplicated (:func:`astropipe.lightcurve.to_lightcurve_table` does that).
    inputs : dict[str, str]
        Path relative to the working directory → SHA-256, for the provenance record.

    Raises
    ------
    MissingInputError
        The path does not exist or holds no Parquet file.
    InputFileError
        A file is truncated, is not Parquet, or lacks a required column (named in the message).
    """
    root = Path(cfg.path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.rglob("*.parquet"))
    else:
        raise MissingInputError(f"ztf.dr.path={cfg.path}: no such file or directory; fix the path.")
    if not files:
        raise MissingInputError(
            f"ztf.dr.path={cfg.path}: no *.parquet file found; put IRSA DR bulk light-curve "
            "files there or point ztf.dr.path elsewhere."
        )
    frames, inputs = [], {}
    for path in files:
        table = read_dr_file(path)
        frames.append(
            explode_dr_table(table, bad_catflags_mask=cfg.bad_catflags_mask, where=str(path))
        )
        inputs[relpath(path)] = sha256_file(path)
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.sort_values(["object_id", "band", "mjd"], kind="mergesort").reset_index(drop=True)
    log.info(
        "read %d DR epochs of %d objects from %d file(s)",
        len(frame),
        frame["object_id"].nunique(),
        len(files),
    )
    return frame, inputs
