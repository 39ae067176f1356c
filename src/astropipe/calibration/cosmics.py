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
pixels within the margin, so the banded mask equals the whole-frame mask (tested).
"""

from __future__ import annotations

import numpy as np

from astropipe.calibration.config import CosmicsConfig

__all__ = ["detect_cosmics", "detect_cosmics_banded", "cosmics_margin", "RADIUS_PER_ITERATION"]

#: Rows one L.A.Cosmic iteration can carry information across (see the module docstring).
RADIUS_PER_ITERATION = 16


def cosmics_margin(cfg: CosmicsConfig) -> int:
    """Rows of context on each side of a band so banded detection equals whole-frame."""
    return int(cfg.niter) * RADIUS_PER_ITERATION + int(cfg.psfsize) // 2 + 8


def _fill_nonfinite_rows(values: np.ndarray) -> np.ndarray:
    """float32 copy with each non-finite pixel replaced by its row's median finite value."""
    out = np.ascontiguousarray(values, dtype=np.float32)
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    out = out.copy() if out is values else out
    for r in np.flatnonzero(bad.any(axis=1)):
        row = out[r]
        good = row[~bad[r]]
        row[bad[r]] = np.median(good) if good.size else 0.0
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
    import astroscrappy

    image = _fill_nonfinite_rows(sci)
    var = _fill_nonfinite_rows(np.square(err, dtype=np.float32))
    nonfinite = ~np.isfinite(sci)
    if nonfinite.any():
        bad = nonfinite if bad is None else (bad | nonfinite)
    crmask, _clean = astroscrappy.detect_cosmics(
        image,
        inmask=None if bad is None else np.ascontiguousarray(bad, dtype=bool),
        invar=var,
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
) -> np.ndarray:
    """:func:`detect_cosmics` on bands of ``band_rows`` rows, each with ``margin`` rows of
    context on both sides (default :func:`cosmics_margin`); the same mask as one whole-frame
    call, at the memory of one band."""
    rows = sci.shape[0]
    m = cosmics_margin(cfg) if margin is None else int(margin)
    step = max(int(band_rows), 1)
    out = np.zeros(sci.shape, dtype=bool)
    for r0 in range(0, rows, step):
        r1 = min(r0 + step, rows)
        a0, a1 = max(r0 - m, 0), min(r1 + m, rows)
        cr = detect_cosmics(
            sci[a0:a1],
            err=err[a0:a1],
            read_noise=read_noise,
            saturation=saturation,
            bad=None if bad is None else bad[a0:a1],
            cfg=cfg,
        )
        out[r0:r1] = cr[r0 - a0 : r1 - a0]
    return out
