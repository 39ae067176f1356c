"""The ``lwa`` collection: OVRO-LWA subband images → ``SKY(time, frequency, polarization, l, m)``.

One file per subband (and Stokes parameter) per time step; the time step is the
``YYYYMMDD_HHMMSS`` of the file name, the time ``DATE-OBS``, the frequency the FREQ axis.
``l`` runs along FITS axis 1 (RA), ``m`` along axis 2 (Dec), so pixels are stored transposed.
The restoring beam (BMAJ, BMIN, BPA) becomes variables over (time, frequency).

Real OVRO-LWA snapshots are phased to the zenith of their own time: ``CRVAL1`` follows local
sidereal time (+0.0418 deg per 10 s). What every file must share is the l/m pixel grid (shape,
``CTYPE`` projection, ``CUNIT``, ``CDELT``, ``CRPIX``, PC matrix, frame); the phase centre
(``CRVAL1``, ``CRVAL2``) is kept per time step, as the coordinates ``phase_center_ra(time)``,
``phase_center_dec(time)`` and in the manifest (``timesteps[i].wcs``). So RA/Dec per pixel are
not stored (they differ per time step): l/m are the sky coordinates, as in xradio's image
schema.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from astropy.io import fits
from astropy.time import Time

from astropipe.errors import GridMismatchError, InputFileError
from astropipe.io.fits import Known, known_layout, read_known, read_primary, read_primary_header
from astropipe.zarrcube import headers as H
from astropipe.zarrcube.discover import StepSpec, group_lwa, parse_lwa_name
from astropipe.zarrcube.grid import PHASE_KEYS, Grid, check_grid, grid_of
from astropipe.zarrcube.layouts import Layout, StepInfo, Tiled, VarSpec, names

__all__ = ["LwaLayout"]


class _Plan(NamedTuple):
    """How one file's pixels go into SKY, from its header (kept from the scan)."""

    freqs: list[float]
    stokes: list[str]
    axes: list[int]  # numpy axes of the data, ordered to (..., stokes, freq, y, x)


class LwaLayout(Layout):
    """OVRO-LWA subband images → ``SKY(time, frequency, polarization, l, m)`` + beam."""

    kind = "lwa"
    sky_dims = ("l", "m")
    transposed = True
    pixel_radec = False  # the phase centre moves with time: RA/Dec per pixel differ per step

    def __init__(self, *, read_workers: int = 2) -> None:
        self._local = threading.local()
        self._free: list[Tiled] = []
        self.read_workers = read_workers
        self._executor: ThreadPoolExecutor | None = None
        # concurrent tasks share this layout: one executor, made under the lock
        self._executor_lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.read_workers, thread_name_prefix="fits-read"
                )
            return self._executor

    def close(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown()

    def _spare(self, shape: tuple[int, ...]) -> Tiled:
        tile = self.tile or max(shape[-2:])
        while True:
            try:  # steps of concurrent tasks share this layout: pop, never check-then-pop
                arr = self._free.pop()
            except IndexError:
                return Tiled(shape, tile)
            if arr.shape == shape and arr.tile == tile:
                return arr

    def release(self, arrays: dict[str, Any]) -> None:
        if len(self._free) < 3 and isinstance(arrays.get("SKY"), Tiled):
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

    def _plan(self, header: fits.Header, path: Path) -> _Plan:
        """Plane order of a file (``header`` corrected by fix_header)."""
        fvals, stokes, _ = self._planes(header, path)
        naxis = int(header["NAXIS"])
        fa, sa = H.find_axis(header, "FREQ"), H.find_axis(header, "STOKES")
        # numpy axis of FITS axis n is naxis - n; bring to (stokes, freq, y, x)
        order = [naxis - sa.number] if sa else []
        order += [naxis - fa.number] if fa else []
        order += [naxis - 2, naxis - 1]
        extra = [a for a in range(naxis) if a not in order]
        return _Plan(fvals, stokes, extra + order)

    def scan(self, spec: StepSpec) -> StepInfo:
        files, nbytes = names(spec.files)
        corrections: set[str] = set()
        planes: dict[tuple[float, str], tuple[float, float, float]] = {}
        grid: Grid | None = None
        grid_file = ""
        center: dict[str, float] = {}
        time_mjd = np.nan
        bunit = ""
        # per file: its header layout and plane order, so the read need not parse the header
        hints: dict[Path, tuple[Known, _Plan]] = {}
        for path in spec.files:
            # header blocks only, with the truncation check
            raw, pixels = read_primary_header(path)
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
            # the l/m pixel grid must match across the series; the phase centre is per step
            g, phase = grid_of(header, (int(header["NAXIS2"]), int(header["NAXIS1"]))).split()
            if grid is None:
                _require_axis_aligned(g.wcs, path)  # the others must match this grid
                _angle_unit(g.wcs, path)
                # as given (the writer makes it relative: this may run in another cwd)
                grid, grid_file, center = g, path.as_posix(), phase
            else:
                check_grid(grid, grid_file, g, path.as_posix())
                _same_center(center, grid_file, phase, path.as_posix(), spec.key)
            if np.isnan(time_mjd):
                if header.get("DATE-OBS"):
                    time_mjd = float(H.header_time(header, where=str(path)).mjd)
                else:
                    corrections.add(H.Correction.TIME_FROM_NAME)
                    time_mjd = float(Time(parse_lwa_name(path).isot, scale="utc").mjd)
            bunit = str(header["BUNIT"])
            b = H.beam(header)
            if any(np.isnan(b)):
                corrections.add(H.Correction.BEAM_MISSING)
            freqs, stokes, done = self._planes(header, path)
            corrections.update(done)
            try:
                hints[path] = (known_layout(path, pixels), self._plan(header, path))
            except (OSError, ValueError, TypeError, KeyError):
                hints.pop(path, None)  # read parses the header itself
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
        ra0, dec0 = (float(center.get(k, np.nan)) for k in PHASE_KEYS)
        return StepInfo(
            key=spec.key,
            paths=spec.files,
            files=files,
            nbytes=nbytes,
            time_mjd=time_mjd,
            grid=grid,
            grid_file=grid_file,
            static={"frequency_hz": freqs, "polarization": pols, "bunit": bunit},
            small={
                "BMAJ": bm[:, 0],
                "BMIN": bm[:, 1],
                "BPA": bm[:, 2],
                "phase_center_ra": np.float64(ra0),
                "phase_center_dec": np.float64(dec0),
            },
            corrections=tuple(sorted(corrections)),
            wcs={k: float(v) for k, v in sorted(center.items())},
            hints=hints,
        )

    def read(self, info: StepInfo) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        freqs = info.static["frequency_hz"]
        pols = info.static["polarization"]
        ny, nx = info.grid.shape
        # reused buffers: fresh 10-100 MB allocations per step cost more in page faults
        # than the copies themselves
        sky = self._spare((len(freqs), len(pols), nx, ny))

        def one(path: Path) -> tuple[str, str]:
            buffer = getattr(self._local, "buffer", None)
            if buffer is None:
                buffer = self._local.buffer = bytearray()
            known = info.hints.get(path)
            got = read_known(path, buffer, known[0]) if known else None
            if got is not None:
                data, digest = got
                plan = known[1]
            else:  # not scanned by this layout, or the file changed since: parse it again
                raw, data, digest = read_primary(path, buffer)
                plan = self._plan(H.fix_header(raw, radio=True)[0], path)
            fvals, stokes = plan.freqs, plan.stokes
            cube = np.transpose(data, plan.axes).reshape((len(stokes), len(fvals), ny, nx))
            for si, s in enumerate(stokes):
                for fi, f in enumerate(fvals):
                    plane = cube[si, fi]
                    k, p = freqs.index(f), pols.index(s)
                    for sl, sm, block in sky.tiles:
                        # (y, x) -> (l, m) = (x, y), straight into the chunk's buffer; the
                        # copy also swaps to native byte order (tile by tile: cache-friendly)
                        block[k, p] = plane[sm, sl].T
            return path.as_posix(), digest

        # files of a step are read in parallel (hashing and copying release the GIL)
        sums = dict(sorted(self._pool().map(one, info.paths)))
        return {"SKY": sky, **info.small}, sums

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
            *(
                VarSpec(
                    f"phase_center_{axis}",
                    (),
                    "float64",
                    np.nan,
                    {
                        "units": "deg",
                        "long_name": f"{what} of the phase centre (CRVAL{n}, the image's "
                        "reference point; l = m = 0 there), after header corrections",
                    },
                    False,
                    coord=True,
                )
                for axis, n, what in (("ra", 1, "right ascension"), ("dec", 2, "declination"))
            ),
        ]

    def static_coords(self, static: dict[str, Any], grid: Grid) -> dict[str, tuple[str, Any, dict]]:
        ny, nx = grid.shape
        w = grid.wcs
        # l_i = ((i + 1) - CRPIX1) * CDELT1 * (pi / 180), i = 0 .. NAXIS1-1, in this order (+ - *
        # only, so the bytes are the same on every machine); m likewise along FITS axis 2
        l_ = (np.arange(nx) + 1 - float(w.get("CRPIX1", 1.0))) * float(w.get("CDELT1", 1.0))
        l_ = l_ * _ANGLE[str(w.get("CUNIT1", "deg")).strip() or "deg"]
        m = (np.arange(ny) + 1 - float(w.get("CRPIX2", 1.0))) * float(w.get("CDELT2", 1.0))
        m = m * _ANGLE[str(w.get("CUNIT2", "deg")).strip() or "deg"]
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


#: radians per unit of the celestial axes (CUNIT): l and m are stored in radians
_ANGLE = {"deg": np.pi / 180.0, "rad": 1.0}


def _angle_unit(w: dict[str, Any], path: Path) -> None:
    for key in ("CUNIT1", "CUNIT2"):
        unit = str(w.get(key, "deg")).strip() or "deg"
        if unit not in _ANGLE:
            raise InputFileError(
                f"{path}: {key}={unit!r}; the lwa layout reads celestial axes in 'deg' or "
                "'rad' — fix the header (CUNIT1/CUNIT2)."
            )


def _same_center(
    ref: dict[str, float], ref_file: str, other: dict[str, float], other_file: str, key: str
) -> None:
    """The files of one time step (one snapshot) share one phase centre."""
    diffs = [
        f"{k} {ref.get(k)!r} vs {other.get(k)!r}"
        for k in PHASE_KEYS
        if (ref.get(k) is None) != (other.get(k) is None)
        or (ref.get(k) is not None and not np.isclose(ref[k], other[k], rtol=1e-9, atol=1e-12))
    ]
    if diffs:
        raise GridMismatchError(
            f"{other_file} does not share the phase centre of {ref_file} (same time step "
            f"{key}): {'; '.join(diffs)}; the subband images of one snapshot must be phased to "
            "one centre — re-image the subband or move it out of the input directory."
        )


def _require_axis_aligned(w: dict[str, Any], path: Path) -> None:
    """l and m come from CRPIX/CDELT alone: refuse a rotated or skewed (PC/CD) pixel grid."""
    for key, identity in (("PC1_1", 1.0), ("PC1_2", 0.0), ("PC2_1", 0.0), ("PC2_2", 1.0)):
        value = w.get(key)
        if value is not None and abs(float(value) - identity) > 1e-12:
            raise InputFileError(
                f"{path}: {key}={value} rotates the pixel grid; the lwa layout supports "
                "axis-aligned images only (PC = identity, no CD matrix) — regrid the images first."
            )
    if any(w.get(k) is not None for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2")):
        raise InputFileError(
            f"{path}: a CD matrix is present; the lwa layout supports CDELT-only, "
            "axis-aligned images — convert to CDELT/PC form or regrid first."
        )
