"""The cleaning pipeline: every point in, every point out, with the step that removed it.

Order (each step a switch in ``features.clean``): excluded rows (upper limits,
``features.exclude_flags``) → quality → non-finite values → outliers → gaps (segments; short
ones dropped) → baseline removal per segment (known transits and user masks left out of the
fit) → wavelet denoising per segment → normalisation per light curve.

A light curve is one ``(object_id, band, source)``: the same star read from two products
(SPOC and eleanor) is cleaned as two curves. Its kind is ``flux`` when any row has a finite
flux, else ``mag``. Fluxes are divided by the trend; magnitudes (only when
``detrend.kinds`` names ``mag``) have it subtracted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from astropipe.features.clean import masks as M
from astropipe.features.clean.config import CleanConfig
from astropipe.features.clean.denoise import wavelet_denoise
from astropipe.features.clean.detrend import biweight_trend, flatten
from astropipe.features.clean.gaps import segment_ids, short_segments
from astropipe.features.clean.normalise import normalise
from astropipe.features.clean.outliers import outlier_mask, running_median
from astropipe.features.clean.summary import summarise
from astropipe.features.clean.transits import range_mask, transit_mask
from astropipe.lightcurve import SURVEY_FLAGS_MASK
from astropipe.tess.quality import quality_bitmask

__all__ = [
    "CurveResult",
    "clean_curve",
    "clean_lightcurves",
    "clean_table",
    "summarise",
    "CLEAN_COLUMNS",
    "CLEAN_SCHEMA",
    "CLEAN_UNITS",
    "CURVE_KEY",
]


#: One light curve.
CURVE_KEY = ("object_id", "band", "source")
#: Columns of the cleaned table, in order.
CLEAN_COLUMNS = (
    "object_id",
    "survey",
    "source",
    "band",
    "mjd",
    "kind",
    "raw_value",
    "raw_err",
    "trend",
    "value",
    "err",
    "segment",
    "clean_mask",
)
#: The cleaned table (``data/interim/lightcurves_clean.parquet``): every input point.
CLEAN_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("survey", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("band", pa.string(), nullable=False),
        pa.field("mjd", pa.float64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # mag | flux
        pa.field("raw_value", pa.float64()),  # the magnitude or flux as read
        pa.field("raw_err", pa.float64()),
        pa.field("trend", pa.float64()),  # the removed baseline; NaN where none was fitted
        pa.field("value", pa.float64()),  # cleaned; NaN where removed
        pa.field("err", pa.float64()),
        pa.field("segment", pa.int32(), nullable=False),  # -1: removed before the gap step
        pa.field("clean_mask", pa.uint16(), nullable=False),  # masks.STEP_BITS
    ]
)
#: Units: raw values keep the survey's (mag, or electron/s for TESS/Kepler); a detrended and
#: normalised flux is relative (dimensionless), see features.clean.normalise.
CLEAN_UNITS = {"mjd": "d"}
_FAMILY = {"TESS": "tess", "Kepler": "kepler", "K2": "kepler"}


@dataclass(frozen=True)
class CurveResult:
    """One cleaned light curve; arrays aligned with the input points."""

    value: np.ndarray  # cleaned value, NaN where removed
    err: np.ndarray
    trend: np.ndarray  # the removed baseline (NaN where none was fitted)
    segment: np.ndarray  # segment number, -1 where removed before the gap step
    mask: np.ndarray  # uint16 clean_mask bits


def _clip_side(clip: str, kind: str) -> str:
    if clip != "auto":
        return clip
    # A transit dims the star: a LOW flux, a HIGH magnitude. Keep it; clip the other side.
    return "upper" if kind == "flux" else "lower"


def clean_curve(
    time: np.ndarray,
    value: np.ndarray,
    err: np.ndarray,
    *,
    kind: str,
    cfg: CleanConfig,
    excluded: np.ndarray | None = None,
    quality_bad: np.ndarray | None = None,
    fit_mask: np.ndarray | None = None,
) -> CurveResult:
    """Clean one light curve (sorted by time).

    Parameters
    ----------
    time, value, err
        Times (MJD), magnitudes or fluxes, their errors.
    kind
        ``"flux"`` or ``"mag"``.
    cfg
        The ``features.clean`` settings.
    excluded, quality_bad
        Points to drop before anything else (upper limits, excluded flags) and for quality.
    fit_mask
        Points to keep out of the baseline fit (known transits, user masks).

    Returns
    -------
    CurveResult
    """
    time = np.asarray(time, dtype=np.float64)
    value = np.asarray(value, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    n = len(time)
    mask = np.zeros(n, dtype=np.uint16)

    def drop(bad: np.ndarray, bit: int) -> None:
        mask[(mask & M.REMOVED == 0) & bad] |= bit

    if excluded is not None:
        drop(np.asarray(excluded, dtype=bool), M.EXCLUDED)
    # Quality before finiteness: a flagged cadence's flux is often NaN, and the flag says why.
    if quality_bad is not None and cfg.quality.enabled:
        drop(np.asarray(quality_bad, dtype=bool), M.QUALITY)
    drop(~(np.isfinite(value) & np.isfinite(time)), M.NONFINITE)

    alive = mask & M.REMOVED == 0
    oc = cfg.outliers
    if oc.method != "none" and kind in oc.kinds and alive.any():
        idx = np.flatnonzero(alive)
        x = value[idx]
        if oc.against == "residual":
            x = x - running_median(x, window=oc.window)
        bad = outlier_mask(x, oc.method, clip=_clip_side(oc.clip, kind), cfg=oc)
        mask[idx[bad]] |= M.OUTLIER

    segment = np.full(n, -1, dtype=np.int64)
    alive = mask & M.REMOVED == 0
    idx = np.flatnonzero(alive)
    gc = cfg.gaps
    if kind in gc.kinds and len(idx):
        seg = segment_ids(time[idx], gap_threshold_hours=gc.gap_threshold_hours)
        short = short_segments(seg, min_points=gc.min_points_per_segment)
        mask[idx[short]] |= M.SHORT_SEGMENT
        # Renumber the surviving segments 0, 1, ... so numbers never skip.
        keep = ~short
        segment[idx[keep]] = np.unique(seg[keep], return_inverse=True)[1]
    else:
        segment[idx] = 0

    out = np.full(n, np.nan)
    out_err = np.full(n, np.nan)
    trend = np.full(n, np.nan)
    alive = mask & M.REMOVED == 0
    out[alive] = value[alive]
    out_err[alive] = err[alive]
    fm = np.zeros(n, dtype=bool) if fit_mask is None else np.asarray(fit_mask, dtype=bool)
    dc = cfg.detrend
    detrend = dc.method != "none" and kind in dc.kinds
    denoise = cfg.denoise.method != "none" and kind in cfg.denoise.kinds
    if detrend or denoise:
        for s in np.unique(segment[alive]):
            sel = np.flatnonzero(segment == s)
            t, v = time[sel], value[sel]
            if detrend:
                if dc.method == "savgol":
                    res = flatten(
                        t,
                        v,
                        window_length=dc.window_length,
                        polyorder=dc.polyorder,
                        sigma=dc.sigma,
                        niters=dc.niters,
                        break_tolerance=dc.break_tolerance,
                        mask=fm[sel],
                    )
                    tr = res.trend
                    mask[sel[~res.used & ~fm[sel]]] |= M.FIT_CLIPPED
                else:
                    tr = biweight_trend(
                        t,
                        v,
                        window_days=dc.biweight_window_days,
                        cval=dc.biweight_cval,
                        iterations=dc.biweight_iterations,
                        mask=fm[sel],
                    )
                trend[sel] = tr
                with np.errstate(invalid="ignore", divide="ignore"):
                    if kind == "flux":
                        out[sel] = v / tr
                        out_err[sel] = err[sel] / np.abs(tr)
                    else:
                        out[sel] = v - tr
            if denoise:
                out[sel] = wavelet_denoise(
                    out[sel], wavelet=cfg.denoise.wavelet, levels=cfg.denoise.levels
                )
        mask[alive & fm] |= M.TRANSIT_MASKED
        # A trend that could not be fitted (a biweight window with no usable point) must not
        # leave a NaN that looks kept.
        drop(alive & ~np.isfinite(out), M.NONFINITE)

    alive = mask & M.REMOVED == 0
    nc = cfg.normalise
    if nc.method != "none" and kind in nc.kinds and alive.any():
        v, e = normalise(out[alive], out_err[alive], method=nc.method)
        out[alive], out_err[alive] = v, e
        drop(alive & ~np.isfinite(out), M.NONFINITE)
    removed = mask & M.REMOVED != 0
    out[removed] = np.nan
    out_err[removed] = np.nan
    return CurveResult(value=out, err=out_err, trend=trend, segment=segment, mask=mask)


def _column(lc: pd.DataFrame, name: str, dtype: Any, fill: Any) -> np.ndarray:
    if name not in lc.columns:
        return np.full(len(lc), fill, dtype=dtype)
    return lc[name].fillna(fill).to_numpy(dtype)


def _quality_bad(lc: pd.DataFrame, cfg: CleanConfig) -> np.ndarray:
    """True where a row has a quality bit of the configured setting."""
    bad = np.zeros(len(lc), dtype=bool)
    flags = _column(lc, "flags", np.int64, 0)
    ztf = _column(lc, "survey", object, "") == "ZTF"
    if cfg.quality.ztf_catflags:
        bad |= ztf & ((flags & SURVEY_FLAGS_MASK & cfg.quality.ztf_catflags) != 0)
    quality = _column(lc, "quality", np.int64, 0)
    mission = _column(lc, "mission", object, "")
    for name, family in _FAMILY.items():
        rows = mission == name
        if rows.any():
            bits = quality_bitmask(family, cfg.quality.mission)
            bad |= rows & ((quality & bits) != 0)
    return bad


def _fit_masks(lc: pd.DataFrame, cfg: CleanConfig, ephemerides: pd.DataFrame | None) -> np.ndarray:
    """Rows inside a known transit or a user mask range."""
    tc = cfg.detrend.transits
    out = np.zeros(len(lc), dtype=bool)
    rows = [(e.object_id, e.period, e.epoch, e.duration_hours) for e in tc.ephemerides]
    if ephemerides is not None and len(ephemerides):
        rows += list(
            ephemerides[["object_id", "period", "epoch", "duration_hours"]].itertuples(
                index=False, name=None
            )
        )
    obj = lc["object_id"].to_numpy()
    t = lc["mjd"].to_numpy(np.float64)
    for oid, period, epoch, hours in rows:
        sel = obj == oid
        if sel.any():
            out[sel] |= transit_mask(
                t[sel],
                period=period,
                epoch=epoch,
                duration_days=hours / 24.0,
                factor=tc.duration_factor,
            )
    for r in tc.masks:
        sel = obj == r.object_id
        if sel.any():
            out[sel] |= range_mask(t[sel], [(r.start, r.end)])
    return out


def clean_lightcurves(
    lc: pd.DataFrame,
    cfg: CleanConfig,
    *,
    exclude_flags: int = 0,
    ephemerides: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Clean every light curve of a table in the common light-curve schema, and summarise.

    :func:`clean_table`, then :func:`~astropipe.features.clean.summary.summarise` (which logs
    the fraction each step removed).

    Returns
    -------
    (table, summary)
        ``table``: as :func:`clean_table`; ``summary``: counts per step.
    """
    table = clean_table(lc, cfg, exclude_flags=exclude_flags, ephemerides=ephemerides)
    return table, summarise(table, warn_fraction=cfg.warn_fraction)


def clean_table(
    lc: pd.DataFrame,
    cfg: CleanConfig,
    *,
    exclude_flags: int = 0,
    ephemerides: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Clean every light curve of a table in the common light-curve schema (no logging).

    Every curve is cleaned on its own, so a table split into whole objects gives, batch by
    batch, the rows of the whole table's result.

    Parameters
    ----------
    lc
        Rows of one or more light-curve tables (``src/astropipe/lightcurve.py``; TESS tables
        add ``mission`` and ``quality``).
    cfg
        ``features.clean``.
    exclude_flags
        Rows with ``flags & exclude_flags`` are dropped first (``features.exclude_flags``).
    ephemerides
        Extra known transits (``object_id, period, epoch, duration_hours``), e.g. from the
        catalog stage.

    Returns
    -------
    pandas.DataFrame
        Every input row, columns :data:`CLEAN_COLUMNS`, sorted by
        ``(object_id, band, source, mjd)`` (stable: rows of equal keys keep their input order).
    """
    lc = lc.sort_values(list(CURVE_KEY) + ["mjd"], kind="mergesort").reset_index(drop=True)
    n = len(lc)
    flux = _column(lc, "flux", np.float64, np.nan)
    mag = _column(lc, "mag", np.float64, np.nan)
    flux_err = _column(lc, "flux_err", np.float64, np.nan)
    mag_err = _column(lc, "mag_err", np.float64, np.nan)
    excluded = _column(lc, "is_upper_limit", bool, False) | (
        (_column(lc, "flags", np.int64, 0) & exclude_flags) != 0
    )
    quality_bad = _quality_bad(lc, cfg)
    fit_mask = _fit_masks(lc, cfg, ephemerides)
    t = lc["mjd"].to_numpy(np.float64)

    keys = lc[list(CURVE_KEY)]
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for col in CURVE_KEY:
            v = keys[col].to_numpy()
            change[1:] |= v[1:] != v[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n)

    kind = np.empty(n, dtype=object)
    value = np.full(n, np.nan)
    err = np.full(n, np.nan)
    trend = np.full(n, np.nan)
    segment = np.full(n, -1, dtype=np.int64)
    cmask = np.zeros(n, dtype=np.uint16)
    raw_value = np.full(n, np.nan)
    raw_err = np.full(n, np.nan)
    for a, b in zip(starts, ends, strict=True):
        is_flux = bool(np.isfinite(flux[a:b]).any())
        k = "flux" if is_flux else "mag"
        v = flux[a:b] if is_flux else mag[a:b]
        e = flux_err[a:b] if is_flux else mag_err[a:b]
        if not cfg.enabled:
            res = CurveResult(
                value=np.where(excluded[a:b] | ~np.isfinite(v), np.nan, v),
                err=e.copy(),
                trend=np.full(b - a, np.nan),
                segment=np.zeros(b - a, dtype=np.int64),
                mask=np.where(
                    excluded[a:b], M.EXCLUDED, np.where(np.isfinite(v), 0, M.NONFINITE)
                ).astype(np.uint16),
            )
        else:
            res = clean_curve(
                t[a:b],
                v,
                e,
                kind=k,
                cfg=cfg,
                excluded=excluded[a:b],
                quality_bad=quality_bad[a:b],
                fit_mask=fit_mask[a:b],
            )
        kind[a:b] = k
        raw_value[a:b], raw_err[a:b] = v, e
        value[a:b], err[a:b], trend[a:b] = res.value, res.err, res.trend
        segment[a:b], cmask[a:b] = res.segment, res.mask

    table = pd.DataFrame(
        {
            "object_id": lc["object_id"].to_numpy(object),
            "survey": _column(lc, "survey", object, ""),
            "source": lc["source"].to_numpy(object),
            "band": lc["band"].to_numpy(object),
            "mjd": t,
            "kind": kind,
            "raw_value": raw_value,
            "raw_err": raw_err,
            "trend": trend,
            "value": value,
            "err": err,
            "segment": segment.astype(np.int32),
            "clean_mask": cmask,
        }
    )
    return table
