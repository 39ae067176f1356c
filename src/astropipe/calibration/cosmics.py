"""Cosmic-ray detection with astroscrappy (L.A.Cosmic, van Dokkum 2001, PASP 113, 1420).

The calibrated frame is in electrons, so astroscrappy runs with ``gain=1`` and the frame's
read noise in electrons; its noise model uses the propagated variance (``invar = ERR²``) and
pixels already flagged (saturated, bad flat, NaN/inf) are excluded through ``inmask``. The pixels
are not replaced: cosmic rays only set a bit in the MASK extension.

NaN/inf pixels: ``inmask`` keeps them from being flagged, but astroscrappy's median filters and
Laplacian still read them, so a NaN would spread to its neighbours. They are filled, in the copy
handed to astroscrappy only, with the median of the finite values of their own row (SCI and
variance alike), a value that depends on the row alone, not on how the frame is cut into bands.

Bands: astroscrappy wants a whole image, and a 16k x 16k frame costs it several GB. Every step
of L.A.Cosmic is local, though: per iteration, the 2x-subsampled Laplacian reaches 1 pixel,
the 5x5 noise median 2, the 3x3-then-7x7 fine-structure medians 4, the two neighbour-growth
passes 2, the 5x5 cleaning window 2, and the saturated-star mask is grown by 2 + 2 pixels:
at most :data:`RADIUS_PER_ITERATION` = 16 pixels (with ``fsmode=convolve``, the PSF kernel's
half-size too). A band is therefore run with ``margin = niter x 16 + psfsize // 2 + 8`` rows of
its neighbours on each side, and only its own rows are kept: a pixel's result depends only on
pixels within the margin, so the banded mask equals the whole-frame mask (tested). The filters
are as local across columns, so a wide band is cut into tiles of columns with the same margin
(:func:`cosmics_rows`): at 16k columns a band of whole rows would cost astroscrappy ~55 bytes
a pixel over 16k × (rows + 2 × margin). The NaN fill is taken from the whole row before the
columns are cut, so it too is the whole-frame value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: the cosmic-ray child process imports numpy and no more
    from astropipe.calibration.config import CosmicsConfig

__all__ = [
    "detect_cosmics",
    "detect_cosmics_banded",
    "cosmics_rows",
    "cosmics_margin",
    "RADIUS_PER_ITERATION",
]

#: Rows one L.A.Cosmic iteration can carry information across (see the module docstring).
RADIUS_PER_ITERATION = 16


def cosmics_margin(cfg: CosmicsConfig) -> int:
    """Rows of context on each side of a band so banded detection equals whole-frame."""
    return int(cfg.niter) * RADIUS_PER_ITERATION + int(cfg.psfsize) // 2 + 8


def _scrappy(
    image: np.ndarray,
    var: np.ndarray,
    bad: np.ndarray | None,
    *,
    read_noise: float,
    saturation: float,
    cfg: CosmicsConfig,
) -> np.ndarray:
    """astroscrappy on finite ``image`` and ``var`` (contiguous float32 copies are made)."""
    import astroscrappy

    crmask, _clean = astroscrappy.detect_cosmics(
        np.ascontiguousarray(image, dtype=np.float32),
        inmask=None if bad is None else np.ascontiguousarray(bad, dtype=bool),
        invar=np.ascontiguousarray(var, dtype=np.float32),
        sigclip=cfg.sigclip,
        sigfrac=cfg.sigfrac,
        objlim=cfg.objlim,
        gain=1.0,
        readnoise=float(read_noise),
        satlevel=float(saturation),
        niter=cfg.niter,
        sepmed=cfg.sepmed,
        cleantype=cfg.cleantype,
        fsmode=cfg.fsmode,
        psfmodel=cfg.psfmodel,
        psffwhm=cfg.psffwhm,
        psfsize=cfg.psfsize,
        verbose=False,
    )
    return np.asarray(crmask, dtype=bool)


def _row_fills(values: np.ndarray) -> dict[int, np.float32 | float]:
    """For each row with a non-finite value: the median of its finite values (0 if none)."""
    fills: dict[int, np.float32 | float] = {}
    bad = ~np.isfinite(values)
    for r in np.flatnonzero(bad.any(axis=1)):
        good = values[r][~bad[r]]
        fills[int(r)] = np.median(good) if good.size else 0.0
    return fills


def _filled(values: np.ndarray, cols: slice, fills: dict[int, np.float32 | float]) -> np.ndarray:
    out = np.array(values[:, cols], dtype=np.float32)  # contiguous copy of the tile
    for r, value in fills.items():
        row = out[r]
        row[~np.isfinite(row)] = value
    return out


def cosmics_rows(
    sci: np.ndarray,
    *,
    err: np.ndarray,
    read_noise: float,
    saturation: float,
    bad: np.ndarray | None,
    cfg: CosmicsConfig,
    keep: slice | None = None,
    tile_cols: int | None = None,
    margin: int | None = None,
) -> np.ndarray:
    """Cosmic-ray mask of rows ``keep`` of ``sci``, which holds them and their context rows.

    ``sci``, ``err`` and ``bad`` are whole rows (every column), so a NaN/inf pixel is filled
    with the median of its whole row, as on the whole frame. astroscrappy then runs on tiles
    of ``tile_cols`` columns (None: all), each widened by ``margin`` columns on both sides
    (default :func:`cosmics_margin`) and cut back: the same locality that makes bands of rows
    exact makes tiles of columns exact.
    """
    rows, cols = sci.shape
    keep = slice(0, rows) if keep is None else keep
    m = cosmics_margin(cfg) if margin is None else int(margin)
    var = np.square(err, dtype=np.float32)
    fill_sci, fill_var = _row_fills(sci), _row_fills(var)
    nonfinite = ~np.isfinite(sci)
    if nonfinite.any():
        bad = nonfinite if bad is None else (bad | nonfinite)
    del nonfinite
    width = cols if tile_cols is None else max(int(tile_cols), 1)
    out = np.empty((keep.stop - keep.start, cols), dtype=bool)
    for c0 in range(0, cols, width):
        c1 = min(c0 + width, cols)
        b0, b1 = (0, cols) if width >= cols else (max(c0 - m, 0), min(c1 + m, cols))
        cr = _scrappy(
            _filled(sci, slice(b0, b1), fill_sci),
            _filled(var, slice(b0, b1), fill_var),
            None if bad is None else bad[:, b0:b1],
            read_noise=read_noise,
            saturation=saturation,
            cfg=cfg,
        )
        out[:, c0:c1] = cr[keep, c0 - b0 : c1 - b0]
    return out


def detect_cosmics(
    sci: np.ndarray,
    *,
    err: np.ndarray,
    read_noise: float,
    saturation: float,
    bad: np.ndarray | None,
    cfg: CosmicsConfig,
) -> np.ndarray:
    """Boolean mask of cosmic-ray pixels in a calibrated frame (electrons).

    Parameters
    ----------
    sci
        Calibrated frame, sky included (electrons).
    err
        Its standard error (electrons); squared into astroscrappy's ``invar``.
    read_noise
        Read noise in electrons.
    saturation
        Saturation level in electrons (astroscrappy's ``satlevel``).
    bad
        Pixels to ignore (already flagged).
    cfg
        astroscrappy parameters.
    """
    return cosmics_rows(
        sci, err=err, read_noise=read_noise, saturation=saturation, bad=bad, cfg=cfg
    )


def detect_cosmics_banded(
    sci: np.ndarray,
    *,
    err: np.ndarray,
    read_noise: float,
    saturation: float,
    bad: np.ndarray | None,
    cfg: CosmicsConfig,
    band_rows: int,
    margin: int | None = None,
    tile_cols: int | None = None,
) -> np.ndarray:
    """:func:`detect_cosmics` on bands of ``band_rows`` rows, each with ``margin`` rows of
    context on both sides (default :func:`cosmics_margin`), and optionally on tiles of
    ``tile_cols`` columns with as many columns of context; the same mask as one whole-frame
    call, at the memory of one tile."""
    rows = sci.shape[0]
    m = cosmics_margin(cfg) if margin is None else int(margin)
    step = max(int(band_rows), 1)
    out = np.zeros(sci.shape, dtype=bool)
    for r0 in range(0, rows, step):
        r1 = min(r0 + step, rows)
        a0, a1 = max(r0 - m, 0), min(r1 + m, rows)
        out[r0:r1] = cosmics_rows(
            sci[a0:a1],
            err=err[a0:a1],
            read_noise=read_noise,
            saturation=saturation,
            bad=None if bad is None else bad[a0:a1],
            cfg=cfg,
            keep=slice(r0 - a0, r1 - a0),
            tile_cols=tile_cols,
            margin=m,
        )
    return out
