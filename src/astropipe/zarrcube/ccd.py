"""The ``ccd`` collection: calibrated frames (SCI, ERR, MASK extensions) → ``(time, y, x)``.

One file per time step, keyed by ``DATE-OBS``; ``FILTER`` and ``EXPTIME`` become the
``filter`` and ``exposure`` coordinates along time; RA/Dec per pixel when there is a WCS.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from astropipe.errors import InputFileError
from astropipe.io.fits import Scaling, open_fits, physical, read_hdu_pixels
from astropipe.provenance import sha256_bytes
from astropipe.zarrcube import headers as H
from astropipe.zarrcube.discover import StepSpec
from astropipe.zarrcube.grid import Grid, grid_of
from astropipe.zarrcube.layouts import Layout, StepInfo, VarSpec, names

__all__ = ["CcdLayout", "FILTER_LEN"]

FILTER_LEN = 16


class CcdLayout(Layout):
    """Calibrated CCD frames (SCI, ERR, MASK extensions) → ``(time, y, x)``."""

    kind = "ccd"
    sky_dims = ("y", "x")
    EXTS = ("SCI", "ERR", "MASK")

    def group(self, files: list[Path]) -> list[StepSpec]:
        keyed: dict[str, Path] = {}
        for path in files:
            with open_fits(path) as hdul:
                header = self._header(hdul, path)
                key = H.header_time(header, where=str(path)).utc.isot
            if key in keyed:
                raise InputFileError(
                    f"{path}: same DATE-OBS ({key}) as {keyed[key]}; a time step holds one frame — "
                    "remove the duplicate."
                )
            keyed[key] = path
        return [StepSpec(key=k, files=(keyed[k],)) for k in sorted(keyed)]

    def _header(self, hdul: fits.HDUList, path: Path) -> fits.Header:
        extnames = [h.name for h in hdul]
        missing = [e for e in self.EXTS if e not in extnames]
        if missing:
            raise InputFileError(
                f"{path}: missing extension(s) {missing} (found {extnames}); "
                "fits_to_zarr@ccd expects the calibrated frames of calibrate_images "
                "with SCI, ERR and MASK extensions."
            )
        # keywords may sit in the primary header or in SCI; SCI wins
        header = hdul[0].header.copy()
        header.update(
            {k: v for k, v in hdul["SCI"].header.items() if k not in ("", "COMMENT", "HISTORY")}
        )
        for key in ("NAXIS", "NAXIS1", "NAXIS2", "BSCALE", "BZERO"):
            if key in hdul["SCI"].header:
                header[key] = hdul["SCI"].header[key]
            elif key in header and key.startswith("B"):
                del header[key]
        return header

    def scan(self, spec: StepSpec) -> StepInfo:
        (path,) = spec.files
        files, nbytes = names(spec.files)
        with open_fits(path) as hdul:
            raw = self._header(hdul, path)
            header, fixed = H.fix_header(raw, radio=False)
            corrections = set(fixed)
            for ext in self.EXTS:
                h = hdul[ext].header
                if h.get("BSCALE", 1.0) != 1.0 or h.get("BZERO", 0.0) != 0.0:
                    corrections.add(H.Correction.BSCALE_BZERO)
            sci = hdul["SCI"].header
            shape = (int(sci["NAXIS2"]), int(sci["NAXIS1"])) if sci.get("NAXIS") == 2 else None
            if shape is None:
                raise InputFileError(f"{path}: SCI is not a 2-D image; expected (y, x) pixels.")
            for ext in ("ERR", "MASK"):
                if tuple(hdul[ext].header.get(f"NAXIS{n}", 0) for n in (2, 1)) != shape:
                    raise InputFileError(
                        f"{path}: {ext} shape differs from SCI {shape}; re-run calibrate_images."
                    )
            time = H.header_time(header, where=str(path))
            exptime = float(header.get("EXPTIME", np.nan))
            if np.isnan(exptime):
                corrections.add(H.Correction.EXPTIME_MISSING)
            flt = str(header.get("FILTER", "")).strip()
            if not flt:
                corrections.add(H.Correction.FILTER_MISSING)
            if len(flt) > FILTER_LEN:
                raise InputFileError(
                    f"{path}: FILTER={flt!r} is longer than {FILTER_LEN} characters; shorten it."
                )
            grid = grid_of(header, shape)
        return StepInfo(
            key=spec.key,
            paths=spec.files,
            files=files,
            nbytes=nbytes,
            time_mjd=float(time.mjd),
            grid=grid,
            grid_file=path.as_posix(),  # made relative by the writer
            static={"bunit": str(header.get("BUNIT", "")).strip()},
            small={
                "exposure": np.float64(exptime),
                "filter": np.array(flt, dtype=f"<U{FILTER_LEN}"),
            },
            corrections=tuple(sorted(corrections)),
        )

    def read(self, info: StepInfo) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        (path,) = info.paths
        out: dict[str, np.ndarray] = {}
        raw = path.read_bytes()  # read once: hashed, then decoded from memory
        digest = sha256_bytes(raw)
        try:
            hdul = fits.open(io.BytesIO(raw), memmap=False, do_not_scale_image_data=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputFileError(
                f"{path}: not a readable FITS file ({first}); re-copy or re-download it."
            ) from None
        with hdul:
            for ext, dtype in (("SCI", np.float32), ("ERR", np.float32), ("MASK", np.uint16)):
                raw_pixels = read_hdu_pixels(hdul[ext], path)  # do_not_scale_image_data
                if ext == "MASK":
                    data = raw_pixels.astype(np.int64) * int(hdul[ext].header.get("BSCALE", 1))
                    data += int(hdul[ext].header.get("BZERO", 0))
                else:
                    data = physical(raw_pixels, Scaling.of(hdul[ext].header, path))
                if ext == "MASK" and data.size and (data.min() < 0 or data.max() > 65535):
                    raise InputFileError(
                        f"{path}: MASK values outside 0..65535; expected a bit mask (uint16)."
                    )
                out[ext] = np.asarray(data, dtype=dtype)
        return {**out, **info.small}, {path.as_posix(): digest}

    def variables(self, static: dict[str, Any]) -> list[VarSpec]:
        unit = static.get("bunit", "")
        sci = {"long_name": "calibrated science image", "units": unit}
        err = {"long_name": "1-sigma uncertainty of SCI", "units": unit}
        mask = {"long_name": "bad-pixel mask (0 = good)"}
        exposure = {"units": "s", "long_name": "exposure time (EXPTIME)"}
        flt = {"long_name": "filter name (FILTER)"}
        yx = ("y", "x")
        return [
            VarSpec("SCI", yx, "float32", np.nan, sci, True),
            VarSpec("ERR", yx, "float32", np.nan, err, True),
            VarSpec("MASK", yx, "uint16", None, mask, True),  # no _FillValue: 0 means good
            VarSpec("exposure", (), "float64", np.nan, exposure, False, coord=True),
            VarSpec("filter", (), f"<U{FILTER_LEN}", "", flt, False, coord=True),
        ]

    def static_coords(self, static: dict[str, Any], grid: Grid) -> dict[str, tuple[str, Any, dict]]:
        ny, nx = grid.shape
        return {
            "y": ("y", np.arange(ny, dtype=np.int32), {"long_name": "pixel row (0-based)"}),
            "x": ("x", np.arange(nx, dtype=np.int32), {"long_name": "pixel column (0-based)"}),
        }
