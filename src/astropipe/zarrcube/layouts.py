"""What a collection's time step holds: ``lwa`` (radio subband images) and ``ccd`` (frames).

A layout turns the files of one time step into a :class:`StepInfo` (headers only: checksums,
time, per-step coordinates, beam, corrections, grid) in a cheap first pass, then into pixel
arrays in :meth:`Layout.read` when the writer gets to that step. It also describes the store
(:meth:`Layout.variables`) so the writer stays generic.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits
from astropy.time import Time

from astropipe.errors import InputFileError
from astropipe.provenance import relpath
from astropipe.zarrcube import headers as H
from astropipe.zarrcube.discover import StepSpec, group_lwa, parse_lwa_name
from astropipe.zarrcube.fitsfile import (
    open_fits,
    physical,
    read_primary,
    read_primary_header,
    scaled,
    sha256_and_size,
)
from astropipe.zarrcube.grid import Grid, check_grid, grid_of

__all__ = ["StepInfo", "VarSpec", "Layout", "LwaLayout", "CcdLayout", "layout_for"]

FILTER_LEN = 16


@dataclass
class StepInfo:
    """Everything known about one time step before its pixels are read."""

    key: str
    paths: tuple[Path, ...]
    files: dict[str, str | None]  # relative path -> sha256 (None until the step is read)
    nbytes: int
    time_mjd: float
    grid: Grid
    grid_file: str
    static: dict[str, Any]  # must be equal for every step of a store (frequency, Stokes)
    small: dict[str, np.ndarray] = field(default_factory=dict)  # per-step values, no time axis
    corrections: tuple[str, ...] = ()


@dataclass(frozen=True)
class VarSpec:
    """One time-dependent array of the store: name, dims after ``time``, dtype, fill, attrs."""

    name: str
    dims: tuple[str, ...]
    dtype: str
    fill: Any
    attrs: dict[str, Any]
    tiled: bool  # True: the last two dims are sky dims, chunked in tiles
    coord: bool = False  # True: a coordinate along time (filter, exposure), not a data variable


class Layout:
    """Base class; see :class:`LwaLayout` and :class:`CcdLayout`."""

    kind: ClassVar[str]
    #: names of the two sky dims, in the order they are stored
    sky_dims: ClassVar[tuple[str, str]]
    #: True when the stored sky dims are (x, y) — FITS axis 1 first — rather than (y, x)
    transposed: ClassVar[bool] = False

    def group(self, files: list[Path]) -> list[StepSpec]:
        """Group the collection's files into time steps, sorted by key."""
        raise NotImplementedError

    def scan(self, spec: StepSpec) -> StepInfo:
        """Checksum the step's files and read their headers (no pixels)."""
        raise NotImplementedError

    def read(self, info: StepInfo) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """The step's time-dependent arrays (without the time axis) by variable name, and
        the SHA-256 of its files (each file is read once: hashed and decoded from one buffer).
        """
        raise NotImplementedError

    def release(self, arrays: dict[str, np.ndarray]) -> None:
        """Hand the arrays of a written step back for reuse (optional)."""

    def variables(self, static: dict[str, Any]) -> list[VarSpec]:
        """The store's time-dependent variables for a given ``static`` description."""
        raise NotImplementedError

    def static_coords(self, static: dict[str, Any], grid: Grid) -> dict[str, tuple[str, Any, dict]]:
        """Coordinates without a time axis: name -> (dim, values, attrs)."""
        raise NotImplementedError


def _names(paths: tuple[Path, ...]) -> tuple[dict[str, str | None], int]:
    files = {relpath(p): None for p in paths}
    return dict(sorted(files.items())), sum(os.path.getsize(p) for p in paths)


def checksums(paths: tuple[Path, ...]) -> dict[str, str]:
    """SHA-256 of each file, by relative path (sorted)."""
    return dict(sorted((relpath(p), sha256_and_size(p)[0]) for p in paths))


class LwaLayout(Layout):
    """OVRO-LWA subband images → ``SKY(time, frequency, polarization, l, m)`` + beam."""

    kind = "lwa"
    sky_dims = ("l", "m")
    transposed = True

    def __init__(self) -> None:
        self._local = threading.local()
        self._free: list[np.ndarray] = []

    def _spare(self, shape: tuple[int, ...]) -> np.ndarray:
        while self._free:
            arr = self._free.pop()
            if arr.shape == shape:
                return arr
        return np.empty(shape, dtype=np.float32)

    def release(self, arrays: dict[str, np.ndarray]) -> None:
        if len(self._free) < 2:
            self._free.append(arrays["SKY"])

    def group(self, files: list[Path]) -> list[StepSpec]:
        return group_lwa(files)

    def _planes(self, header: fits.Header, path: Path) -> tuple[list[float], list[str], list[str]]:
        """Frequencies (Hz) and Stokes labels of a file's planes, and the corrections used."""
        done: list[str] = []
        freq_axis = H.find_axis(header, "FREQ")
        stokes_axis = H.find_axis(header, "STOKES")
        if freq_axis is None:
            freqs = [parse_lwa_name(path).freq_mhz * 1e6]
            done.append(H.Correction.FREQ_FROM_NAME)
        else:
            freqs = H.axis_values(freq_axis)
            if freq_axis.length == 1:
                done.append(H.Correction.FREQ_DEGENERATE)
        if stokes_axis is None:
            done.append(H.Correction.STOKES_ASSUMED)
        elif stokes_axis.length == 1:
            done.append(H.Correction.STOKES_DEGENERATE)
        return freqs, H.stokes_labels(stokes_axis, where=str(path)), done

    def scan(self, spec: StepSpec) -> StepInfo:
        files, nbytes = _names(spec.files)
        corrections: set[str] = set()
        planes: dict[tuple[float, str], tuple[float, float, float]] = {}
        grid: Grid | None = None
        grid_file = ""
        time_mjd = np.nan
        bunit = ""
        for path in spec.files:
            # header blocks only, with the truncation check
            raw = read_primary_header(path)
            header, fixed = H.fix_header(raw, radio=True)
            corrections.update(fixed)
            if raw.get("BSCALE", 1.0) != 1.0 or raw.get("BZERO", 0.0) != 0.0:
                corrections.add(H.Correction.BSCALE_BZERO)
            if H.find_axis(header, "RA") is None or H.find_axis(header, "RA").number != 1:
                raise InputFileError(
                    f"{path}: expected RA on FITS axis 1 and Dec on axis 2 "
                    "(CTYPE1='RA---SIN'); "
                    f"found CTYPE1={header.get('CTYPE1')!r}; transpose the image first."
                )
            g = grid_of(header, (int(header["NAXIS2"]), int(header["NAXIS1"])))
            if grid is None:
                grid, grid_file = g, relpath(path)
            else:
                check_grid(grid, grid_file, g, relpath(path))
            if np.isnan(time_mjd):
                if header.get("DATE-OBS"):
                    time_mjd = float(H.header_time(header, where=str(path)).mjd)
                else:
                    corrections.add("DATE-OBS missing: time taken from the file name")
                    time_mjd = float(Time(parse_lwa_name(path).isot, scale="utc").mjd)
            bunit = str(header["BUNIT"])
            b = H.beam(header)
            if any(np.isnan(b)):
                corrections.add(H.Correction.BEAM_MISSING)
            freqs, stokes, done = self._planes(header, path)
            corrections.update(done)
            for f in freqs:
                for s in stokes:
                    planes[(f, s)] = b
        assert grid is not None
        freqs = sorted({f for f, _ in planes})
        order = list(H.STOKES_CODES.values())
        pols = sorted({s for _, s in planes}, key=order.index)
        missing = [(f, s) for f in freqs for s in pols if (f, s) not in planes]
        if missing:
            raise InputFileError(
                f"time step {spec.key}: the files do not cover every (frequency, Stokes) pair, "
                f"missing {missing}; add the missing planes."
            )
        bm = np.array([planes[(f, pols[0])] for f in freqs], dtype=np.float64)
        return StepInfo(
            key=spec.key,
            paths=spec.files,
            files=files,
            nbytes=nbytes,
            time_mjd=time_mjd,
            grid=grid,
            grid_file=grid_file,
            static={"frequency_hz": freqs, "polarization": pols, "bunit": bunit},
            small={"BMAJ": bm[:, 0], "BMIN": bm[:, 1], "BPA": bm[:, 2]},
            corrections=tuple(sorted(corrections)),
        )

    def read(self, info: StepInfo) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        freqs = info.static["frequency_hz"]
        pols = info.static["polarization"]
        ny, nx = info.grid.shape
        shape = (len(freqs), len(pols), nx, ny)
        # reused buffers: fresh 10-100 MB allocations per step cost more in page faults
        # than the copies themselves
        sky = self._spare(shape)
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = bytearray()
        sums: dict[str, str] = {}
        for path in info.paths:
            raw, data, sums[relpath(path)] = read_primary(path, buffer)
            header, _ = H.fix_header(raw, radio=True)
            fvals, stokes, _ = self._planes(header, path)
            naxis = data.ndim
            fa, sa = H.find_axis(header, "FREQ"), H.find_axis(header, "STOKES")
            # numpy axis of FITS axis n is naxis - n; bring to (stokes, freq, y, x)
            order = [naxis - sa.number] if sa else []
            order += [naxis - fa.number] if fa else []
            order += [naxis - 2, naxis - 1]
            extra = [a for a in range(naxis) if a not in order]
            cube = np.transpose(data, extra + order).reshape((len(stokes), len(fvals), ny, nx))
            for si, s in enumerate(stokes):
                for fi, f in enumerate(fvals):
                    # (y, x) -> (l, m) = (x, y); the copy also swaps to native byte order
                    sky[freqs.index(f), pols.index(s)] = cube[si, fi].T
            del data, cube
        return {"SKY": sky, **info.small}, dict(sorted(sums.items()))

    def variables(self, static: dict[str, Any]) -> list[VarSpec]:
        beam_attrs = {"units": "deg", "long_name": "restoring beam {} (FITS {})"}
        return [
            VarSpec(
                "SKY",
                ("frequency", "polarization", "l", "m"),
                "float32",
                np.nan,
                {"long_name": "sky brightness", "units": static.get("bunit", "Jy/beam")},
                True,
            ),
            *(
                VarSpec(
                    k,
                    ("frequency",),
                    "float64",
                    np.nan,
                    {
                        "units": beam_attrs["units"],
                        "long_name": beam_attrs["long_name"].format(what, k),
                    },
                    False,
                )
                for k, what in (
                    ("BMAJ", "major axis FWHM"),
                    ("BMIN", "minor axis FWHM"),
                    ("BPA", "position angle"),
                )
            ),
        ]

    def static_coords(self, static: dict[str, Any], grid: Grid) -> dict[str, tuple[str, Any, dict]]:
        ny, nx = grid.shape
        w = grid.wcs
        deg = np.pi / 180.0
        l_ = (np.arange(nx) + 1 - float(w.get("CRPIX1", 1.0))) * float(w.get("CDELT1", 1.0)) * deg
        m = (np.arange(ny) + 1 - float(w.get("CRPIX2", 1.0))) * float(w.get("CDELT2", 1.0)) * deg
        proj = str(w.get("CTYPE1", ""))[-3:]
        along = "direction cosine along FITS axis {} ({} intermediate world coordinate, radians)"
        freq_attrs = {"units": "Hz", "standard_name": "radio_frequency"}
        pol_attrs = {"long_name": "Stokes parameter (FITS STOKES axis)"}
        return {
            "frequency": ("frequency", np.array(static["frequency_hz"], np.float64), freq_attrs),
            "polarization": ("polarization", np.array(static["polarization"], "<U4"), pol_attrs),
            "l": ("l", l_, {"units": "1", "long_name": along.format(1, proj) + ", east (RA) +"}),
            "m": ("m", m, {"units": "1", "long_name": along.format(2, proj) + ", north (Dec) +"}),
        }


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
        names = [h.name for h in hdul]
        missing = [e for e in self.EXTS if e not in names]
        if missing:
            raise InputFileError(
                f"{path}: missing extension(s) {missing} (found {names}); fits_to_zarr@ccd expects "
                "the calibrated frames of calibrate_images with SCI, ERR and MASK extensions."
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
        files, nbytes = _names(spec.files)
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
                corrections.add("EXPTIME missing: exposure stored as NaN")
            flt = str(header.get("FILTER", "")).strip()
            if not flt:
                corrections.add("FILTER missing: filter stored as an empty string")
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
            grid_file=relpath(path),
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
        digest = hashlib.sha256(raw).hexdigest()
        try:
            hdul = fits.open(io.BytesIO(raw), memmap=False, do_not_scale_image_data=True)
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{path}: not a readable FITS file ({exc}); re-copy it.") from exc
        with hdul:
            for ext, dtype in (("SCI", np.float32), ("ERR", np.float32), ("MASK", np.uint16)):
                raw_pixels = scaled(hdul[ext], path)  # not scaled: do_not_scale_image_data
                if ext == "MASK":
                    data = raw_pixels.astype(np.int64) * int(hdul[ext].header.get("BSCALE", 1))
                    data += int(hdul[ext].header.get("BZERO", 0))
                else:
                    data = physical(raw_pixels, hdul[ext].header)
                if ext == "MASK" and data.size and (data.min() < 0 or data.max() > 65535):
                    raise InputFileError(
                        f"{path}: MASK values outside 0..65535; expected a bit mask (uint16)."
                    )
                out[ext] = np.asarray(data, dtype=dtype)
        return {**out, **info.small}, {relpath(path): digest}

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


def layout_for(kind: str) -> Layout:
    """The layout of a collection kind (``lwa`` or ``ccd``)."""
    return {"lwa": LwaLayout, "ccd": CcdLayout}[kind]()
