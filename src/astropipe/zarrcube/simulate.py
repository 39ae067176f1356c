"""A small, deterministic, SIMULATED OVRO-LWA subband series built from the one real image.

The real sample (``20240524_070001_MFS_test_image.fits``, a WSClean multi-frequency-synthesis
all-sky image) supplies the header template and the sky: it is block-averaged to the requested
size (keeping the all-sky footprint), scaled to each subband with a spectral index, and then
gets fresh Gaussian sky noise and a point source of known flux, convolved with the subband's
beam. Files are named like OVRO-LWA portal inputs
(``YYYYMMDD_HHMMSS_<freq>MHz_averaged_sim-I-image.fits``) and keep the template's quirks
(negative CRVAL1, ``JY/BEAM``, degenerate FREQ/STOKES axes) so the header corrections run.

With ``zenith_phased=True`` every time step is phased to its own zenith, as real OVRO-LWA
snapshots are: ``CRVAL1`` advances at the sidereal rate (360 deg per sidereal day, +0.0418 deg
per 10 s) from the template's value, ``CRVAL2`` (the site latitude) stays. The committed sample
keeps one phase centre (the default).

:func:`noise_series` writes larger series quickly (Gaussian noise, any image size, the real
header) for benchmarks.

Run ``python -m astropipe.zarrcube.simulate`` to regenerate ``data/sample/ovro_lwa/simulated``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time, TimeDelta

__all__ = [
    "SIDEREAL_DEG_PER_S",
    "SimulationConfig",
    "simulate_series",
    "noise_series",
    "main",
    "TEMPLATE",
]

TEMPLATE = Path("data/sample/ovro_lwa/20240524_070001_MFS_test_image.fits")
#: Rate of the local sidereal time, deg of RA per second of UTC (360 deg per 86164.0905 s).
SIDEREAL_DEG_PER_S = 360.0 / 86164.0905


def zenith_ra(crval1: float, seconds: float) -> float:
    """``CRVAL1`` of a snapshot ``seconds`` after one phased to RA ``crval1`` (same zenith)."""
    return crval1 + seconds * SIDEREAL_DEG_PER_S


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of the simulated series (the defaults make the committed sample)."""

    n_times: int = 4
    freqs_mhz: tuple[float, ...] = (41.0, 46.0, 50.0, 55.0)
    size: int = 128
    cadence_s: float = 10.0
    noise_jy: float = 2.0  # per pixel, Jy/beam, at every subband
    source_jy: float = 200.0  # point-source flux at 50 MHz, Jy
    source_pix: tuple[int, int] = (80, 50)  # (x, y) 0-based pixel of the point source
    spectral_index: float = -0.7
    channel_width_hz: float = 4.6e6
    seed: int = 4
    tag: str = "sim"
    dtype: str = "float32"  # or int16 (then BSCALE/BZERO are written)
    zenith_phased: bool = False  # True: CRVAL1 follows sidereal time, as in real snapshots


def _block_mean(img: np.ndarray, factor: int) -> np.ndarray:
    n = img.shape[0] // factor
    return img[: n * factor, : n * factor].reshape(n, factor, n, factor).mean(axis=(1, 3))


def _gaussian(
    shape: tuple[int, int], x0: float, y0: float, sx: float, sy: float, pa: float
) -> np.ndarray:
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    c, s = np.cos(pa), np.sin(pa)
    u = (x - x0) * c + (y - y0) * s
    v = -(x - x0) * s + (y - y0) * c
    return np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))


def simulate_series(
    template: str | Path, out_dir: str | Path, *, config: SimulationConfig = SimulationConfig()
) -> list[Path]:
    """Write the series into ``out_dir``; return the paths written (sorted).

    The same ``template`` and ``config`` always give byte-identical files.
    """
    cfg = config
    with fits.open(template) as hdul:
        header = hdul[0].header.copy()
        sky = np.asarray(hdul[0].data, dtype=np.float64)[0, 0]
    n0 = header["NAXIS1"]
    if n0 % cfg.size:
        raise ValueError(f"size {cfg.size} must divide the template size {n0}")
    factor = n0 // cfg.size
    base = _block_mean(sky, factor)
    f_ref = float(header["CRVAL3"])
    t0 = Time(header["DATE-OBS"], format="isot", scale="utc")
    rng = np.random.default_rng(cfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for k in range(cfg.n_times):
        t = t0 + TimeDelta(k * cfg.cadence_s, format="sec")
        stamp = t.strftime("%Y%m%d_%H%M%S")
        # the source brightens linearly over the series, so each time step is distinct
        flux_t = cfg.source_jy * (1.0 + 0.1 * k)
        for f_mhz in cfg.freqs_mhz:
            f_hz = f_mhz * 1e6
            scale = (f_hz / f_ref) ** cfg.spectral_index
            bmaj = float(header["BMAJ"]) * f_ref / f_hz
            bmin = float(header["BMIN"]) * f_ref / f_hz
            cdelt = abs(float(header["CDELT1"])) * factor
            # beam FWHM -> Gaussian sigma in pixels (at least half a pixel)
            smin, smaj = (max(fwhm / cdelt, 0.5) / 2.3548 for fwhm in (bmin, bmaj))
            beam = _gaussian(base.shape, *cfg.source_pix, smin, smaj, np.deg2rad(header["BPA"]))
            img = (
                base * scale
                + flux_t * (f_hz / 50e6) ** cfg.spectral_index * beam
                + rng.normal(0.0, cfg.noise_jy, base.shape)
            )
            h = header.copy()
            h["NAXIS1"] = h["NAXIS2"] = cfg.size
            h["CRPIX1"] = h["CRPIX2"] = (float(header["CRPIX1"]) - 0.5) / factor + 0.5
            h["CDELT1"] = float(header["CDELT1"]) * factor
            h["CDELT2"] = float(header["CDELT2"]) * factor
            h["CRVAL3"] = f_hz
            h["CDELT3"] = cfg.channel_width_hz
            h["BMAJ"], h["BMIN"] = bmaj, bmin
            h["DATE-OBS"] = t.isot[:21]
            if cfg.zenith_phased:
                h["CRVAL1"] = zenith_ra(float(header["CRVAL1"]), k * cfg.cadence_s)
            h.remove("HISTORY", ignore_missing=True, remove_all=True)
            h["HISTORY"] = "SIMULATED by astropipe.zarrcube.simulate from the real OVRO-LWA image"
            h["HISTORY"] = f"{Path(template).name}: block mean x{factor}, spectral index "
            h["HISTORY"] = f"{cfg.spectral_index}, noise {cfg.noise_jy} Jy/beam, point source"
            h["HISTORY"] = f"{flux_t:.1f} Jy at 50 MHz at pixel (x, y) = {cfg.source_pix}"
            cube = img[None, None].astype(np.float32)
            path = out / f"{stamp}_{f_mhz:g}MHz_averaged_{cfg.tag}-I-image.fits"
            if cfg.dtype == "int16":
                bscale = float(np.ptp(cube)) / 60000.0 or 1.0
                bzero = float(cube.min()) + 30000.0 * bscale
                hdu = fits.PrimaryHDU(header=h)
                hdu.data = np.round((cube - bzero) / bscale).astype(np.int16)
                hdu.header["BSCALE"], hdu.header["BZERO"] = bscale, bzero
            else:
                hdu = fits.PrimaryHDU(data=cube, header=h)
            hdu.writeto(path, overwrite=True, output_verify="silentfix")
            written.append(path)
    return sorted(written)


def noise_series(
    out_dir: str | Path,
    *,
    n_times: int,
    size: int,
    freqs_mhz: Sequence[float],
    template: str | Path = TEMPLATE,
    cadence_s: float = 10.0,
    zenith_phased: bool = True,
    seed: int = 0,
) -> int:
    """Write ``n_times`` x ``len(freqs_mhz)`` float32 noise images of ``size``^2 px with the
    template's header (the same 128 deg field of view, zenith-phased by default); return the
    bytes written. Fast enough for GB-sized benchmark inputs; deterministic for a ``seed``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = fits.getheader(template)
    header.remove("HISTORY", ignore_missing=True, remove_all=True)
    header["NAXIS1"] = header["NAXIS2"] = size
    header["CRPIX1"] = header["CRPIX2"] = size / 2 + 1
    header["CDELT1"], header["CDELT2"] = -128.0 / size, 128.0 / size
    rng = np.random.default_rng(seed)
    t0 = Time(header["DATE-OBS"], format="isot", scale="utc")
    total = 0
    for k in range(n_times):
        t = t0 + TimeDelta(k * cadence_s, format="sec")
        stamp = t.strftime("%Y%m%d_%H%M%S")
        for f in freqs_mhz:
            h = header.copy()
            h["CRVAL3"] = f * 1e6
            h["DATE-OBS"] = t.isot
            if zenith_phased:
                h["CRVAL1"] = zenith_ra(float(header["CRVAL1"]), k * cadence_s)
            data = rng.standard_normal((1, 1, size, size), dtype=np.float32) * 8.0
            path = out / f"{stamp}_{f:g}MHz_averaged_bench-I-image.fits"
            fits.PrimaryHDU(data, header=h).writeto(path, overwrite=True)
            total += path.stat().st_size
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the committed sample (or another series, see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--template", default=str(TEMPLATE))
    p.add_argument("--out", default="data/sample/ovro_lwa/simulated")
    p.add_argument("--n-times", type=int, default=SimulationConfig.n_times)
    p.add_argument("--size", type=int, default=SimulationConfig.size)
    p.add_argument("--freqs-mhz", type=float, nargs="+", default=list(SimulationConfig.freqs_mhz))
    p.add_argument("--seed", type=int, default=SimulationConfig.seed)
    a = p.parse_args(argv)
    cfg = SimulationConfig(
        n_times=a.n_times, size=a.size, freqs_mhz=tuple(a.freqs_mhz), seed=a.seed
    )
    paths = simulate_series(a.template, a.out, config=cfg)
    print(f"wrote {len(paths)} files to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
