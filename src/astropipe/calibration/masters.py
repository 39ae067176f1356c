"""Building master frames: per-frame preparation (overscan, trim, gain) and tiled combination.

A master is held in memory as one frame (float32 data and error); the stack of input frames
never is: :func:`build_master` hands :func:`~astropipe.calibration.combine.combine_tiled` one
loader per frame that reads and prepares only the rows of the current band.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from astropipe.calibration.calibrate import subtract_dark
from astropipe.calibration.combine import CombineConfig, combine_tiled, tile_rows_for
from astropipe.calibration.config import CalibrationConfig, DetectorConfig, OverscanConfig
from astropipe.calibration.frames import FrameInfo, HeaderValueError, read_region
from astropipe.calibration.plan import CalibrationPlan, MasterSpec
from astropipe.calibration.sections import overscan_axis, overscan_vector
from astropipe.compute import parse_bytes
from astropipe.errors import ConfigError, InputFileError

__all__ = [
    "Detector",
    "detector_for",
    "Master",
    "band_loader",
    "build_master",
    "build_masters",
    "master_tile_rows",
]

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


def band_loader(
    info: FrameInfo,
    detector: Detector,
    overscan: OverscanConfig,
    *,
    bias: np.ndarray | None = None,
    dark: np.ndarray | None = None,
    scale: float = 1.0,
) -> Callable[[int, int], np.ndarray]:
    """A loader of trimmed rows ``[r0, r1)`` in electrons, optionally bias/dark-subtracted.

    The result is ``((raw - overscan)[trim] · gain - bias - dark · t) · scale``.
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
            out -= bias[r0:r1]
        if dark is not None:
            out = subtract_dark(out, dark[r0:r1], t)
        if scale != 1.0:
            out *= scale
        return out

    return load


@dataclass
class Master:
    """A combined master frame in electrons (dark: electrons per second; flat: normalised)."""

    spec: MasterSpec
    data: np.ndarray
    err: np.ndarray
    ncombine: int
    norm: float = 1.0

    @property
    def name(self) -> str:
        """Output file stem."""
        return self.spec.name


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
) -> Master:
    """Combine the frames of ``spec`` into a master.

    Bias: frames in electrons. Dark: bias-subtracted, divided by EXPTIME, combined per second.
    Flat: bias- and dark-subtracted, each frame scaled to unit median, combined, and the master
    divided by its own median (``norm`` records that median).
    """
    shape = spec.frames[0].trimmed_shape
    loaders = []
    for info in spec.frames:
        loaders.append(
            _finite_only(_frame_loader(info, spec, detector, overscan, shape, bias, dark), info)
        )
    value, err, _count = combine_tiled(
        loaders, shape, cfg, tile_rows=tile_rows, in_flight=in_flight
    )
    norm = 1.0
    if spec.kind == "flat":
        finite = value[np.isfinite(value)]
        norm = float(np.median(finite.astype(np.float64))) if finite.size else 0.0
        if not norm > 0:
            raise ConfigError(f"{spec.name}: master flat median is {norm}; check the flat frames.")
        value = (value / np.float32(norm)).astype(np.float32)
        err = (err / np.float32(norm)).astype(np.float32)
    log.info("%s: %d frames combined (%s)", spec.name, len(spec.frames), cfg.method)
    return Master(spec, value, err, len(spec.frames), norm)


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
) -> Callable[[int, int], np.ndarray]:
    """The band loader of one input frame of ``spec``, prepared for its kind."""
    det = detector_for(info, detector)
    b = bias.data if bias is not None else None
    if spec.kind == "dark":
        assert info.exptime
        return band_loader(info, det, overscan, bias=b, scale=1.0 / info.exptime)
    if spec.kind == "flat":
        d = dark.data if dark is not None else None
        full = _finite_only(band_loader(info, det, overscan, bias=b, dark=d), info)(0, shape[0])
        level = float(np.median(full))
        if not level > 0:
            raise ConfigError(
                f"{info.path}: flat frame has median {level:.3g} e- after bias/dark "
                "subtraction; it cannot be normalised, remove it."
            )
        del full
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


def build_masters(
    plan: CalibrationPlan,
    cfg: CalibrationConfig,
    *,
    tile_rows: int | None = None,
    workers: int = 1,
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
        built[spec.name] = build_master(
            spec,
            combine[spec.kind],
            detector=cfg.detector,
            overscan=cfg.overscan,
            tile_rows=tile_rows if tile_rows is not None else master_tile_rows(cfg, spec, workers),
            in_flight=workers,
            bias=of_group("bias", spec) if spec.kind != "bias" else None,
            dark=of_group("dark", spec) if spec.kind == "flat" else None,
        )
    return built
