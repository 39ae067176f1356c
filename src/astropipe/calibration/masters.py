"""Building master frames: per-frame preparation (overscan, trim, gain) and tiled combination.

Neither the stack of input frames nor the master is ever whole in memory:
:func:`build_master` hands :func:`~astropipe.calibration.combine.combine_tiled` one loader per
frame that reads and prepares only the rows of the current band, and each combined band goes
straight to the master's planes: its FITS file on disk (:func:`build_masters` with a
``directory``, what the stage does) or arrays in memory (small frames, tests). A flat's median
(each input frame's, and the master's own) is computed exactly over bands
(:func:`~astropipe.calibration.median.exact_median`), and the master is then divided by it
band by band, in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from astropipe.calibration.calibrate import master_imagetyp, subtract_dark
from astropipe.calibration.combine import CombineConfig, combine_tiled, tile_rows_for
from astropipe.calibration.config import CalibrationConfig, DetectorConfig, OverscanConfig
from astropipe.calibration.frames import FrameInfo, HeaderValueError, read_region
from astropipe.calibration.median import exact_median, middle_values, numpy_mean
from astropipe.calibration.plan import CalibrationPlan, MasterSpec
from astropipe.calibration.planes import ArrayPlane, Plane, band_starts, read_bands
from astropipe.calibration.sections import overscan_axis, overscan_vector
from astropipe.compute import parse_bytes
from astropipe.errors import ConfigError, InputFileError
from astropipe.io.atomic import atomic_path
from astropipe.io.fitsstream import FitsPlane, ImageSpec, StreamedFits

__all__ = [
    "Detector",
    "detector_for",
    "Master",
    "band_loader",
    "build_master",
    "build_masters",
    "master_tile_rows",
    "master_header",
    "master_metrics",
    "CHECKSUM_COMMENT",
]

#: Comment of the CHECKSUM/DATASUM cards: fixed, so files do not change from run to run.
CHECKSUM_COMMENT = "astropipe"

#: Units of each master kind (BUNIT; the metrics' "unit").
UNITS = {"bias": "electron", "dark": "electron/s", "flat": ""}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detector:
    """Gain (e-/ADU), read noise (e-) and saturation level (ADU) of one frame."""

    gain: float
    read_noise: float
    saturation: float


def _lookup(info: FrameInfo, value: float | None, keywords: list[str], what: str) -> float | None:
    if value is not None:
        return float(value)
    for key in keywords:
        if key in info.header and info.header[key] not in (None, ""):
            try:
                value = float(info.header[key])
            except (TypeError, ValueError):
                value = float("nan")
            if not np.isfinite(value):
                raise HeaderValueError(
                    f"{info.path}: header keyword {key}={info.header[key]!r} is not a finite "
                    f"number; fix it, or set calibration.detector.{what} to override it.",
                    path=info.path,
                    kind=info.kind,
                )
            return value
    return None


def detector_for(info: FrameInfo, cfg: DetectorConfig) -> Detector:
    """Gain, read noise and saturation: from conf when set, else from the header.

    Raises
    ------
    ConfigError
        When neither the config nor the header gives the gain or the read noise.
    HeaderValueError
        When a header keyword used for them is not a finite number.
    """
    gain = _lookup(info, cfg.gain, cfg.gain_keywords, "gain")
    rn = _lookup(info, cfg.read_noise, cfg.read_noise_keywords, "read_noise")
    sat = _lookup(info, cfg.saturation, cfg.saturation_keywords, "saturation")
    for value, what, keys in (
        (gain, "gain", cfg.gain_keywords),
        (rn, "read_noise", cfg.read_noise_keywords),
    ):
        if value is None:
            raise ConfigError(
                f"{info.path}: no {what} in the header ({'/'.join(keys)}); "
                f"set calibration.detector.{what}."
            )
    assert gain is not None and rn is not None
    if gain <= 0:
        raise ConfigError(f"{info.path}: gain {gain} must be > 0 e-/ADU.")
    return Detector(gain, rn, sat if sat is not None else cfg.default_saturation)


def frame_overscan(info: FrameInfo, ov: OverscanConfig) -> np.ndarray | None:
    """The overscan level to subtract, broadcastable against the raw frame; None without BIASSEC."""
    if info.biassec is None:
        return None
    strip = read_region(info, *info.biassec.slices)
    axis = overscan_axis(info.biassec) if ov.axis is None else ov.axis
    return overscan_vector(strip, axis=axis, method=ov.method, shape=info.shape)


def _rows(plane: Plane | np.ndarray, r0: int, r1: int) -> np.ndarray:
    return plane[r0:r1] if isinstance(plane, np.ndarray) else plane.read(r0, r1)


def band_loader(
    info: FrameInfo,
    detector: Detector,
    overscan: OverscanConfig,
    *,
    bias: Plane | np.ndarray | None = None,
    dark: Plane | np.ndarray | None = None,
    scale: float = 1.0,
) -> Callable[[int, int], np.ndarray]:
    """A loader of trimmed rows ``[r0, r1)`` in electrons, optionally bias/dark-subtracted.

    The result is ``((raw - overscan)[trim] · gain - bias - dark · t) · scale``. ``bias`` and
    ``dark`` are masters' planes (or whole arrays); only the rows asked for are read.
    """
    vec = frame_overscan(info, overscan)
    y0, x0 = (info.trimsec.y0, info.trimsec.x0) if info.trimsec else (0, 0)
    x1 = info.trimsec.x1 if info.trimsec else info.shape[1]
    t = info.exptime or 0.0

    def load(r0: int, r1: int) -> np.ndarray:
        out = read_region(info, slice(y0 + r0, y0 + r1))
        # In place where possible: a band is large and memory bandwidth is the cost here.
        if vec is not None:
            out -= vec[y0 + r0 : y0 + r1] if vec.shape[0] > 1 else vec
        if (x0, x1) != (0, out.shape[1]):
            out = out[:, x0:x1]
        if detector.gain != 1.0:
            out *= detector.gain
        if bias is not None:
            out -= _rows(bias, r0, r1)
        if dark is not None:
            out = subtract_dark(out, _rows(dark, r0, r1), t)
        if scale != 1.0:
            out *= scale
        return out

    return load


@dataclass
class Master:
    """A combined master frame in electrons (dark: electrons per second; flat: normalised).

    ``data_plane`` and ``err_plane`` hold it (float32): the images of its FITS file, or arrays
    in memory. ``data`` and ``err`` read them whole: for small frames and tests only.
    """

    spec: MasterSpec
    data_plane: Plane
    err_plane: Plane
    ncombine: int
    norm: float = 1.0
    path: Path | None = None  # its FITS file, when written

    @property
    def name(self) -> str:
        """Output file stem."""
        return self.spec.name

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return self.data_plane.shape

    @property
    def data(self) -> np.ndarray:
        """The whole master (reads every row)."""
        return self.data_plane.read(0, self.shape[0])

    @property
    def err(self) -> np.ndarray:
        """The whole ERR plane (reads every row)."""
        return self.err_plane.read(0, self.shape[0])


def _loader_bands(
    load: Callable[[int, int], np.ndarray], rows: int, step: int
) -> Callable[[], Iterator[np.ndarray]]:
    return lambda: (load(r0, r1) for r0, r1 in band_starts(rows, step))


def build_master(
    spec: MasterSpec,
    cfg: CombineConfig,
    *,
    detector: DetectorConfig,
    overscan: OverscanConfig,
    tile_rows: int,
    in_flight: int = 2,
    bias: Master | None = None,
    dark: Master | None = None,
    planes: tuple[Plane, Plane] | None = None,
) -> Master:
    """Combine the frames of ``spec`` into a master, written band by band into ``planes``.

    Bias: frames in electrons. Dark: bias-subtracted, divided by EXPTIME, combined per second.
    Flat: bias- and dark-subtracted, each frame scaled to unit median, combined, and the master
    divided by its own median (``norm`` records that median).

    Parameters
    ----------
    planes
        Where the data and ERR go (float32, the trimmed shape); None: new arrays in memory.
        Passes over a plane (the flat's median and normalisation) use bands of
        ``tile_rows × in_flight`` rows, the memory one combine batch had.
    """
    shape = spec.frames[0].trimmed_shape
    loaders = []
    for info in spec.frames:
        loaders.append(
            _finite_only(
                _frame_loader(info, spec, detector, overscan, shape, bias, dark, tile_rows),
                info,
            )
        )
    if planes is None:
        planes = (ArrayPlane.empty(shape, np.float32), ArrayPlane.empty(shape, np.float32))
    data, err = planes

    def sink(r0: int, v: np.ndarray, e: np.ndarray) -> None:
        data.write(r0, v)
        err.write(r0, e)

    combine_tiled(loaders, shape, cfg, tile_rows=tile_rows, in_flight=in_flight, sink=sink)
    norm = 1.0
    if spec.kind == "flat":
        step = tile_rows * max(in_flight, 1)
        median = exact_median(
            lambda: read_bands(data, step),
            dtype=np.float64,
            max_candidates=max(step * shape[1], 1 << 16),
        )
        norm = median if median is not None else 0.0
        if not norm > 0:
            raise ConfigError(f"{spec.name}: master flat median is {norm}; check the flat frames.")
        scale = np.float32(norm)
        for plane in (data, err):
            for r0, r1 in band_starts(shape[0], step):
                plane.write(r0, (plane.read(r0, r1) / scale).astype(np.float32))
    log.info("%s: %d frames combined (%s)", spec.name, len(spec.frames), cfg.method)
    return Master(spec, data, err, len(spec.frames), norm)


def _finite_only(
    load: Callable[[int, int], np.ndarray], info: FrameInfo
) -> Callable[[int, int], np.ndarray]:
    """``load``, refusing a band with a NaN/inf pixel, naming this frame.

    A master is combined from finite values only (the combine does not skip NaN), and a NaN
    in one bias would otherwise surface later as "the flat has median nan", naming the flat.
    """

    def checked(r0: int, r1: int) -> np.ndarray:
        out = load(r0, r1)
        bad = ~np.isfinite(out)
        if bad.any():
            n = int(np.count_nonzero(bad))
            y, x = (int(v) for v in np.argwhere(bad)[0])
            raise InputFileError(
                f"{info.path}: {n} NaN/inf pixel(s) in rows {r0}-{r1 - 1} of this {info.kind} "
                f"frame (first at trimmed row {r0 + y}, column {x}; a BLANK or NaN raw value); "
                f"a master {info.kind} needs finite pixels; replace the frame or remove it "
                "from the input directory."
            )
        return out

    return checked


def _frame_loader(
    info: FrameInfo,
    spec: MasterSpec,
    detector: DetectorConfig,
    overscan: OverscanConfig,
    shape: tuple[int, int],
    bias: Master | None,
    dark: Master | None,
    step: int,
) -> Callable[[int, int], np.ndarray]:
    """The band loader of one input frame of ``spec``, prepared for its kind.

    A flat frame's level (its median after bias/dark subtraction) is found over bands of
    ``step`` rows, exactly ``np.median`` of the whole prepared frame.
    """
    det = detector_for(info, detector)
    b = bias.data_plane if bias is not None else None
    if spec.kind == "dark":
        assert info.exptime
        return band_loader(info, det, overscan, bias=b, scale=1.0 / info.exptime)
    if spec.kind == "flat":
        d = dark.data_plane if dark is not None else None
        load = _finite_only(band_loader(info, det, overscan, bias=b, dark=d), info)
        median = exact_median(
            _loader_bands(load, shape[0], step),
            dtype=np.float64,
            max_candidates=max(step * shape[1], 1 << 16),
        )
        level = median if median is not None else float("nan")
        if not level > 0:
            raise ConfigError(
                f"{info.path}: flat frame has median {level:.3g} e- after bias/dark "
                "subtraction; it cannot be normalised, remove it."
            )
        return band_loader(info, det, overscan, bias=b, dark=d, scale=1.0 / level)
    return band_loader(info, det, overscan)


def master_tile_rows(cfg: CalibrationConfig, spec: MasterSpec, workers: int) -> int:
    """Band height for a master: conf ``tile_rows`` or what fits in ``memory_limit``."""
    if cfg.tile_rows is not None:
        return cfg.tile_rows
    import psutil

    limit = parse_bytes(cfg.memory_limit)
    used = psutil.Process().memory_info().rss
    # Whatever the process already holds counts against the limit; keep a floor so a tiny
    # limit still makes progress (one row per band at worst).
    budget = max(limit - used, limit // 8)
    if used > limit // 2:
        log.warning(
            "calibration.memory_limit=%s: the process already holds %.0f MB; combining %s in "
            "small bands (raise the limit for speed)",
            cfg.memory_limit,
            used / 1e6,
            spec.name,
        )
    shape = spec.frames[0].trimmed_shape
    return tile_rows_for(len(spec.frames), shape, budget_bytes=budget, workers=workers)


def master_header(spec: MasterSpec, *, inputs: Mapping[str, str], norm: float = 1.0) -> fits.Header:
    """The primary header of a master; ``inputs`` maps file name → SHA-256."""
    first = spec.frames[0]
    head = fits.Header()
    head["IMAGETYP"] = (master_imagetyp(spec.kind), "astropipe calibrate_images")
    head["INSTRUME"] = first.instrument
    head["XBINNING"], head["YBINNING"] = first.binning
    if spec.filter is not None:
        head["FILTER"] = spec.filter
    head["BUNIT"] = UNITS[spec.kind]
    head["NCOMBINE"] = (len(spec.frames), "frames combined")
    if spec.kind == "flat":
        head["FLATNORM"] = (norm, "median of the combined unit-median flats")
    for name, sha in sorted(inputs.items()):
        head.add_history(f"input: {name}")
        head.add_history(f"sha256 {sha}")
    return head


def _master_file(path: Path, spec: MasterSpec, inputs: Mapping[str, str]) -> StreamedFits:
    shape = spec.frames[0].trimmed_shape
    return StreamedFits(
        path,
        [
            ImageSpec(master_header(spec, inputs=inputs), np.float32, shape),
            ImageSpec(fits.Header(), np.float32, shape, "ERR", (("BUNIT", UNITS[spec.kind]),)),
        ],
        checksum_comment=CHECKSUM_COMMENT,
    )


def build_masters(
    plan: CalibrationPlan,
    cfg: CalibrationConfig,
    *,
    tile_rows: int | None = None,
    workers: int = 1,
    directory: Path | None = None,
    inputs: Mapping[str, str] | None = None,
) -> dict[str, Master]:
    """Build every master of ``plan`` in its build order (biases, darks, flats).

    Darks are bias-subtracted with the master bias of their own group (instrument and
    binning), flats with the bias and dark of their group; the plan has already checked that
    each group has a bias.

    Parameters
    ----------
    plan
        The validated calibration plan.
    cfg
        The ``calibration`` config (combine settings per kind, detector, overscan, memory).
    tile_rows
        Band height for every master; None: :func:`master_tile_rows` (conf ``tile_rows`` or
        what fits in ``memory_limit``).
    workers
        Bands combined at once (the dask workers of the ``compute`` config).
    directory
        When given, each master is written there as ``<name>.fits`` (primary = data, ``ERR``
        extension, checksums), band by band, and read back from it: memory stays one band
        whatever the frame size. None: masters are kept in memory.
    inputs
        File name → SHA-256 of every input frame, for the masters' HISTORY (with
        ``directory``).

    Returns
    -------
    dict
        Master name → :class:`Master`, in build order.
    """
    built: dict[str, Master] = {}

    def of_group(kind: str, spec: MasterSpec) -> Master | None:
        return next(
            (m for m in built.values() if m.spec.kind == kind and m.spec.group == spec.group),
            None,
        )

    combine = {"bias": cfg.bias, "dark": cfg.dark, "flat": cfg.flat_combine}
    for spec in plan.masters:
        kw = dict(
            detector=cfg.detector,
            overscan=cfg.overscan,
            tile_rows=tile_rows if tile_rows is not None else master_tile_rows(cfg, spec, workers),
            in_flight=workers,
            bias=of_group("bias", spec) if spec.kind != "bias" else None,
            dark=of_group("dark", spec) if spec.kind == "flat" else None,
        )
        if directory is None:
            built[spec.name] = build_master(spec, combine[spec.kind], **kw)  # type: ignore[arg-type]
            continue
        final = Path(directory) / f"{spec.name}.fits"
        names = {f.name: (inputs or {})[f.name] for f in spec.frames}
        with atomic_path(final) as tmp:
            out = _master_file(tmp, spec, names)
            master = build_master(
                spec,
                combine[spec.kind],
                planes=(out.plane(0), out.plane(1)),
                **kw,  # type: ignore[arg-type]
            )
            out.finish({0: {"FLATNORM": master.norm}} if spec.kind == "flat" else None)
        master.data_plane = FitsPlane(final, out.plane(0).layout)
        master.err_plane = FitsPlane(final, out.plane(1).layout)
        master.path = final
        built[spec.name] = master
    return built


def master_metrics(master: Master, *, band_rows: int) -> dict[str, object]:
    """Median, noise (MAD std), mean ERR of a master, computed over bands of ``band_rows``.

    Each equals what numpy/astropy give on the whole arrays: ``np.median(data)`` (float32,
    NaN if any pixel is NaN), astropy's ``mad_std`` of the finite pixels in float64, and
    ``np.mean(err, dtype=np.float64)``.
    """
    rows, cols = master.shape
    step = max(int(band_rows), 1)
    most = max(step * cols, 1 << 16)
    data = master.data_plane
    bad = [0, 0]  # NaN, ±inf pixels
    for band in read_bands(data, step):
        bad[0] += int(np.count_nonzero(np.isnan(band)))
        bad[1] += int(np.count_nonzero(np.isinf(band)))
    # float32 → float64 keeps the order: one selection gives both medians unless ±inf or NaN
    # make the finite values' median differ from np.median's
    middle = middle_values(
        lambda: read_bands(data, step), dtype=np.float32, max_candidates=most, finite=False
    )
    median = float("nan") if bad[0] or middle is None else float(np.mean(middle))
    if bad[0] or bad[1]:
        center = exact_median(lambda: read_bands(data, step), dtype=np.float64, max_candidates=most)
    else:
        center = None if middle is None else float(np.mean(middle.astype(np.float64)))
    if center is None:
        noise = float("nan")
    else:
        c = np.float64(center)

        def deviations() -> Iterator[np.ndarray]:
            for band in read_bands(data, step):
                values = band.astype(np.float64)
                yield np.abs(values[np.isfinite(values)] - c)

        mad = exact_median(deviations, dtype=np.float64, max_candidates=most)
        noise = float(mad * 1.482602218505602) if mad is not None else float("nan")
    return {
        "kind": master.spec.kind,
        "ncombine": master.ncombine,
        "median": median,
        "noise": noise,
        "mean_err": numpy_mean(read_bands(master.err_plane, step), rows * cols),
        "unit": {"bias": "electron", "dark": "electron/s", "flat": "relative"}[master.spec.kind],
    }
