"""Shared helpers for the fits_to_zarr tests (not a test module)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from astropy.io import fits

from astropipe.zarrcube.chunks import chunk_refs, hash_chunks
from astropipe.zarrcube.manifest import ATTR, read_manifest
from astropipe.zarrcube.simulate import TEMPLATE, SimulationConfig, simulate_series

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / TEMPLATE


def make_lwa(directory: Path, **kw: Any) -> list[Path]:
    """A small simulated OVRO-LWA series (64x64 px) in ``directory``."""
    cfg = SimulationConfig(**{"n_times": 4, "freqs_mhz": (41.0, 46.0, 50.0), "size": 64, **kw})
    return simulate_series(REAL, directory, config=cfg)


def params(
    inputs: Path, out: Path, *, kind: str = "lwa", glob: str | None = None, **zarr: Any
) -> dict:
    """A params mapping with one collection ``kind`` reading ``inputs`` and writing ``out``."""
    section = {
        "collections": {
            kind: {
                "kind": kind,
                "input_dir": str(inputs),
                "glob": glob or ("*-I-image.fits" if kind == "lwa" else "*.fits"),
                "output": str(out),
                "metrics": str(out.parent / f"{out.name}.metrics.json"),
            }
        },
        "chunks": {"time": 1, "frequency": -1, "sky": 32},
        "zarr_format": 3,
        "compressor": {"name": "zstd", "level": 1, "cname": "lz4", "shuffle": "shuffle"},
        "rebuild": False,
        "read_workers": 2,
    }
    section.update(zarr)
    return {"zarr": section}


def tree_digest(store: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file of a store (the byte-identity check)."""
    return {
        p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def write_ccd(
    path: Path,
    *,
    date: str,
    filt: str = "V",
    exptime: float = 30.0,
    shape=(40, 50),
    seed: int = 0,
    wcs: bool = True,
    int_sci: bool = False,
) -> np.ndarray:
    """A calibrated frame as calibrate_images writes it (SCI, ERR, MASK); returns SCI values."""
    rng = np.random.default_rng(seed)
    sci = rng.normal(100.0, 5.0, shape).astype(np.float32)
    primary = fits.PrimaryHDU()
    primary.header["DATE-OBS"] = date
    primary.header["FILTER"] = filt
    primary.header["EXPTIME"] = exptime
    sh = fits.Header()
    sh["BUNIT"] = "electron"
    if wcs:
        sh.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": -10.5, "CRVAL2": 36.46,
                   "CRPIX1": 25.0, "CRPIX2": 20.0, "CDELT1": -1e-4, "CDELT2": 1e-4})  # fmt: skip
    if int_sci:
        raw = np.round(sci * 10).astype(np.int16)
        sci_hdu = fits.ImageHDU(raw, header=sh, name="SCI")
        sci_hdu.header["BSCALE"], sci_hdu.header["BZERO"] = 0.1, 3.0
        sci = (raw.astype(np.float64) * 0.1 + 3.0).astype(np.float32)
    else:
        sci_hdu = fits.ImageHDU(sci, header=sh, name="SCI")
    err = fits.ImageHDU(np.full(shape, 5.0, np.float32), name="ERR")
    mask = fits.ImageHDU((rng.random(shape) < 0.05).astype(np.uint8), name="MASK")
    fits.HDUList([primary, sci_hdu, err, mask]).writeto(path)
    return sci


def seal(store: Path) -> None:
    """Record the SHA-256 of every chunk of a hand-built store in its manifest, as fits_to_zarr
    does for the chunks it writes (so validate can verify them)."""
    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    sums = hash_chunks(store, [r.key for r in chunk_refs(group)])
    manifest = read_manifest(store)
    assert manifest is not None, store
    group.attrs[ATTR] = dataclasses.replace(manifest, chunk_sha256=sums).to_json()


def chunk_files(store: Path) -> list[str]:
    """Store-relative paths of the chunk objects of a store (everything but metadata)."""
    meta = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}
    return sorted(
        p.relative_to(store).as_posix()
        for p in store.rglob("*")
        if p.is_file() and p.name not in meta
    )


def flip_byte(path: Path, at: int | None = None) -> None:
    """Flip every bit of one byte of ``path`` (the middle one by default)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` to a fraction of its size."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
