"""A deterministic simulated observing night for tests and the sample pipeline run.

Physical model (all frames ``ny × nx`` imaging pixels plus an overscan strip at the right):

- **Bias**: a level of ``bias_level`` ADU, a fixed column pattern (the same in every frame,
  removed by the master bias), and per-frame a row-dependent drift (offset + slow sine in
  rows) that appears identically in the overscan strip (removed by overscan subtraction).
- **Read noise**: Gaussian, ``read_noise`` electrons, in every pixel including the overscan.
- **Dark current**: ``dark_rate`` e-/s/pixel plus ``n_hot`` hot pixels at 1-5 e-/s,
  accumulated for EXPTIME (Poisson).
- **Flat response**: vignetting ``1 - vignetting·(r/r_max)²`` times a pixel-to-pixel
  Gaussian response (``p2p`` rms) times a weak per-filter gradient, with ``n_dead`` pixels at
  30 % response (these are the bad-flat pixels the MASK should flag).
- **Sky and stars**: a uniform sky of ``sky_rate[filter]`` e-/s/pixel, plus circular Gaussian
  stars (FWHM ``fwhm``), one of them bright enough to saturate; multiplied by the flat response
  and Poisson-sampled.
- **Cosmic rays**: short tracks (1-4 pixels, 200-2000 e- each) at random positions in darks and
  science frames, recorded in ``truth.json`` with their pixel positions.
- **Digitisation**: ``ADU = round(e-/gain + bias)``, clipped to ``[0, 65535]`` and stored as
  unsigned 16-bit (BITPIX=16, BZERO=32768).

Every random draw comes from ``numpy.random.default_rng(seed)`` streams derived from the
frame index, so the same version of numpy regenerates the same bytes:
``python -m astropipe.calibration.simulate data/sample/ccd/night``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = [
    "NightModel",
    "FrameSpec",
    "night_frames",
    "flat_response",
    "sky_model",
    "simulate_night",
    "main",
]


@dataclass(frozen=True)
class NightModel:
    """Parameters of the simulated camera and night."""

    ny: int = 256
    nx: int = 256
    overscan: int = 16
    gain: float = 1.5
    read_noise: float = 6.0
    bias_level: float = 1000.0
    dark_rate: float = 0.02
    n_hot: int = 40
    vignetting: float = 0.25
    p2p: float = 0.01
    n_dead: int = 12
    flat_level: float = 15000.0
    sky_rate: dict[str, float] = field(default_factory=lambda: {"V": 4.0, "R": 6.0})
    fwhm: float = 3.0
    n_stars: int = 25
    cr_per_science: int = 25
    cr_per_dark: int = 10
    seed: int = 20260523


@dataclass(frozen=True)
class FrameSpec:
    """One simulated frame: file name, IMAGETYP spelling, kind, exposure and filter."""

    name: str
    imagetyp: str
    kind: str
    exptime: float
    filter: str | None = None
    keyword: str = "IMAGETYP"


def night_frames() -> list[FrameSpec]:
    """The night: 5 biases, 3 darks, 3 flats in V and R, 2 science frames in V and R.

    Frame types use the spellings real cameras write, so classification is exercised.
    """
    out = [
        FrameSpec(f"bias_{i:02d}.fits", t, "bias", 0.0)
        for i, t in enumerate(["BIAS", "Bias Frame", "zero", "BIAS", "Bias Frame"], 1)
    ]
    out += [
        FrameSpec(f"dark_{i:02d}.fits", t, "dark", 300.0)
        for i, t in enumerate(["DARK", "Dark Frame", "DARK"], 1)
    ]
    for filt in ("V", "R"):
        out += [
            FrameSpec(f"flat_{filt}_{i:02d}.fits", t, "flat", 5.0, filt)
            for i, t in enumerate(["FLAT", "Flat Field", "FLAT"], 1)
        ]
    out += [
        FrameSpec("sci_V_01.fits", "Light Frame", "science", 120.0, "V"),
        FrameSpec("sci_V_02.fits", "LIGHT", "science", 120.0, "V"),
        FrameSpec("sci_R_01.fits", "object", "science", 120.0, "R", keyword="OBSTYPE"),
        FrameSpec("sci_R_02.fits", "Light Frame", "science", 120.0, "R"),
    ]
    return out


def _fixed(model: NightModel) -> dict[str, np.ndarray]:
    """Detector properties shared by every frame (fixed pattern, hot and dead pixels, stars)."""
    rng = np.random.default_rng([model.seed, 0])
    ny, nx = model.ny, model.nx
    columns = rng.normal(0.0, 2.0, nx)  # ADU, column bias pattern
    p2p = rng.normal(1.0, model.p2p, (ny, nx))
    dead = rng.choice(ny * nx, model.n_dead, replace=False)
    p2p.flat[dead] = 0.3
    hot = np.zeros((ny, nx))
    hot.flat[rng.choice(ny * nx, model.n_hot, replace=False)] = rng.uniform(1, 5, model.n_hot)
    stars = np.column_stack(
        [
            rng.uniform(8, ny - 8, model.n_stars),
            rng.uniform(8, nx - 8, model.n_stars),
            10 ** rng.uniform(3.3, 5.3, model.n_stars),
        ]
    )
    stars[0, 2] = 2.0e6  # saturates the centre pixels
    return {"columns": columns, "p2p": p2p, "hot": hot, "stars": stars}


def flat_response(model: NightModel, filt: str | None) -> np.ndarray:
    """The true normalised-to-centre response: vignetting × pixel-to-pixel × filter gradient."""
    fixed = _fixed(model)
    y, x = np.mgrid[0 : model.ny, 0 : model.nx]
    cy, cx = (model.ny - 1) / 2, (model.nx - 1) / 2
    r2 = ((y - cy) ** 2 + (x - cx) ** 2) / (cy**2 + cx**2)
    gradient = 1.0 + (0.03 if filt == "R" else -0.02) * (x - cx) / model.nx
    return (1.0 - model.vignetting * r2) * fixed["p2p"] * gradient


def sky_model(model: NightModel, filt: str, exptime: float) -> np.ndarray:
    """Noise-free sky + stars in electrons above the atmosphere (before the flat response)."""
    fixed = _fixed(model)
    sigma = model.fwhm / (2 * np.sqrt(2 * np.log(2)))
    y, x = np.mgrid[0 : model.ny, 0 : model.nx]
    image = np.full((model.ny, model.nx), model.sky_rate[filt] * exptime)
    for sy, sx, flux in fixed["stars"]:
        image += (
            flux
            / (2 * np.pi * sigma**2)
            * np.exp(-((y - sy) ** 2 + (x - sx) ** 2) / (2 * sigma**2))
        )
    return image


def _cosmics(rng: np.random.Generator, model: NightModel, n: int) -> list[dict[str, object]]:
    hits = []
    for _ in range(n):
        y, x = int(rng.integers(2, model.ny - 6)), int(rng.integers(2, model.nx - 6))
        dy, dx = [(0, 1), (1, 0), (1, 1), (1, -1)][int(rng.integers(0, 4))]
        length = int(rng.integers(1, 5))
        pix = [[y + k * dy, x + k * dx] for k in range(length)]
        hits.append(
            {"pixels": pix, "electrons": [float(v) for v in rng.uniform(200, 2000, length)]}
        )
    return hits


def _frame(
    model: NightModel, spec: FrameSpec, index: int
) -> tuple[np.ndarray, list[dict[str, object]]]:
    rng = np.random.default_rng([model.seed, index + 1])
    fixed = _fixed(model)
    ny, nx = model.ny, model.nx
    electrons = np.zeros((ny, nx))
    hits: list[dict[str, object]] = []
    if spec.kind != "bias":
        electrons += (model.dark_rate + fixed["hot"]) * spec.exptime
    if spec.kind == "flat":
        electrons += model.flat_level * flat_response(model, spec.filter)
    if spec.kind == "science":
        assert spec.filter is not None
        electrons += sky_model(model, spec.filter, spec.exptime) * flat_response(model, spec.filter)
    electrons = rng.poisson(electrons).astype(np.float64)
    if spec.kind in ("dark", "science"):
        hits = _cosmics(
            rng, model, model.cr_per_dark if spec.kind == "dark" else model.cr_per_science
        )
        for hit in hits:
            for (py, px), e in zip(hit["pixels"], hit["electrons"], strict=True):  # type: ignore[arg-type]
                electrons[py, px] += e
    raw = np.empty((ny, nx + model.overscan))
    raw[:, :nx] = electrons / model.gain
    raw[:, nx:] = 0.0
    raw += rng.normal(0.0, model.read_noise / model.gain, raw.shape)
    drift = rng.normal(0.0, 3.0) + rng.uniform(0.5, 2.0) * np.sin(
        np.arange(ny) / 40.0 + rng.uniform(0, 6.28)
    )
    raw += model.bias_level + drift[:, None]
    raw[:, :nx] += fixed["columns"][None, :]
    return np.clip(np.rint(raw), 0, 65535).astype(np.uint16), hits


def _header(model: NightModel, spec: FrameSpec, index: int) -> fits.Header:
    h = fits.Header()
    h[spec.keyword] = spec.imagetyp
    h["INSTRUME"] = ("SIMCAM", "simulated (astropipe.calibration.simulate)")
    h["XBINNING"], h["YBINNING"] = 1, 1
    h["EXPTIME"] = (spec.exptime, "[s]")
    h["DATE-OBS"] = f"2026-05-23T{20 + index // 12:02d}:{(index * 5) % 60:02d}:00.000"
    if spec.filter:
        h["FILTER"] = spec.filter
    h["GAIN"] = (model.gain, "[e-/ADU]")
    h["RDNOISE"] = (model.read_noise, "[e-]")
    h["SATURATE"] = (65535, "[ADU]")
    nx = model.nx
    h["BIASSEC"] = (
        f"[{nx + 3}:{nx + model.overscan},1:{model.ny}]",
        "overscan (2 columns skipped)",
    )
    h["TRIMSEC"] = (f"[1:{nx},1:{model.ny}]", "imaging area")
    if spec.kind == "science":
        h["OBJECT"] = "SIMFIELD"
        h.update(
            {
                "CTYPE1": "RA---TAN",
                "CTYPE2": "DEC--TAN",
                "CRPIX1": nx / 2 + 0.5,
                "CRPIX2": model.ny / 2 + 0.5,
                "CRVAL1": 250.4235,
                "CRVAL2": 36.4599,
                "CDELT1": -0.5 / 3600,
                "CDELT2": 0.5 / 3600,
                "CUNIT1": "deg",
                "CUNIT2": "deg",
                "RADESYS": "ICRS",
            }
        )
    return h


def simulate_night(directory: str | os.PathLike[str], model: NightModel | None = None) -> Path:
    """Write the simulated night's raw frames and ``truth.json`` into ``directory``."""
    model = model or NightModel()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    truth: dict[str, object] = {"model": asdict(model), "frames": {}}
    for index, spec in enumerate(night_frames()):
        data, hits = _frame(model, spec, index)
        fits.PrimaryHDU(data, header=_header(model, spec, index)).writeto(
            out / spec.name, overwrite=True
        )
        truth["frames"][spec.name] = {  # type: ignore[index]
            "kind": spec.kind,
            "exptime": spec.exptime,
            "filter": spec.filter,
            "cosmic_rays": hits,
            "sky_electrons": model.sky_rate[spec.filter] * spec.exptime
            if spec.kind == "science" and spec.filter
            else None,
        }
    (out / "truth.json").write_text(
        json.dumps(truth, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m astropipe.calibration.simulate DIRECTORY``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="output directory, e.g. data/sample/ccd/night")
    args = parser.parse_args(argv)
    simulate_night(args.directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
