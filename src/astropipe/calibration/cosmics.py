"""Cosmic-ray detection with astroscrappy (L.A.Cosmic, van Dokkum 2001, PASP 113, 1420).

The calibrated frame is in electrons, so astroscrappy runs with ``gain=1`` and the frame's
read noise in electrons; its noise model uses the propagated variance (``invar = ERR²``) and
pixels already flagged (saturated, bad flat) are excluded through ``inmask``. The pixels are
not replaced: cosmic rays only set a bit in the MASK extension.
"""

from __future__ import annotations

import numpy as np

from astropipe.calibration.config import CosmicsConfig

__all__ = ["detect_cosmics"]


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

    crmask, _clean = astroscrappy.detect_cosmics(
        np.ascontiguousarray(sci, dtype=np.float32),
        inmask=None if bad is None else np.ascontiguousarray(bad, dtype=bool),
        invar=np.ascontiguousarray(np.square(err), dtype=np.float32),
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
