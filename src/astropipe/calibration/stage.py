"""The ``calibrate_images`` stage: raw CCD frames → master frames and calibrated science frames.

Outputs (paths from ``calibration.outputs``):

- ``masters/<kind>_<instrument>_<binning>[_<filter>].fits``: master bias (e-), dark (e-/s)
  and flat (normalised), each with an ``ERR`` extension;
- ``science/<raw name>.fits``: calibrated frames with ``SCI``, ``ERR``, ``MASK``;
- the report JSON: frames per type, cosmic-ray pixels per frame, noise of each master,
  quarantined frames; the metrics JSON: frames per type and cosmic-ray pixels in total.

Both output directories are built in temporary siblings and swapped in at the end, so a
failed run leaves the previous outputs untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask

from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.cosmics import cosmics_margin
from astropipe.calibration.frames import HeaderValueError, discover
from astropipe.calibration.masters import (
    Master,
    build_masters,
    detector_for,
    master_metrics,
    master_tile_rows,
)
from astropipe.calibration.plan import CalibrationPlan, MasterSpec, SciencePlan, make_plan
from astropipe.calibration.science import (
    science_band_rows,
    science_tile_cols,
    sky_median,
    write_science,
)
from astropipe.compute import ComputeConfig, parse_bytes, scheduler
from astropipe.io.atomic import atomic_dir
from astropipe.io.tables import write_json
from astropipe.progress import dask_bar
from astropipe.provenance import inputs_digest, relpath, sha256_file

__all__ = ["run", "plan_from_params", "tile_rows", "science_rows", "science_cols"]

log = logging.getLogger(__name__)

#: What ``calibration.outputs.metrics`` keeps of the summary; the rest (per master and science
#: frame, quarantined frames, the input digest) is in ``calibration.outputs.report`` only.
METRIC_KEYS = ("frames", "cosmic_ray_pixels_total")


def plan_from_params(
    cfg: CalibrationConfig, *, quarantine: dict[Path, str] | None = None
) -> tuple[CalibrationPlan, int]:
    """Discover, classify, group and validate the inputs; also check every frame's detector.

    A science frame whose header holds an unusable value (EXPTIME, binning, gain, ...) is
    left out and recorded in ``quarantine`` (path → one-line reason) when it is given; the
    same fault in a bias, dark or flat raises, since every science frame of its group needs it.
    """
    frames, skipped = discover(cfg.inputs.path, patterns=cfg.inputs.patterns, quarantine=quarantine)
    usable = []
    for f in frames:
        try:
            detector_for(f, cfg.detector)
        except HeaderValueError as exc:
            if quarantine is None or f.kind != "science":
                raise
            log.warning("%s (quarantined; the run goes on without it)", exc)
            quarantine[f.path] = str(exc)
            continue
        usable.append(f)
    plan = make_plan(usable, directory=cfg.inputs.path, require_dark=cfg.require_dark)
    return plan, len(skipped)


def tile_rows(cfg: CalibrationConfig, spec: MasterSpec, workers: int) -> int:
    """Band height for a master (see :func:`~astropipe.calibration.masters.master_tile_rows`)."""
    return master_tile_rows(cfg, spec, workers)


def _budget(cfg: CalibrationConfig, workers: int) -> int:
    """Bytes each of ``workers`` may use: ``memory_limit`` less what the process holds now
    (the interpreter, the libraries), at least an eighth of the limit."""
    import psutil

    limit = parse_bytes(cfg.memory_limit)
    used = psutil.Process().memory_info().rss
    if used > limit // 2:
        log.warning(
            "calibration.memory_limit=%s: the process already holds %.0f MB; working in "
            "small bands (raise the limit for speed)",
            cfg.memory_limit,
            used / 1e6,
        )
    return max(limit - used, limit // 8) // max(workers, 1)


def science_rows(cfg: CalibrationConfig, shape: tuple[int, int], workers: int) -> int:
    """Band height for calibrating science frames of ``shape``, ``workers`` at a time.

    conf ``tile_rows`` when set; else what one frame's share of ``memory_limit`` (less what
    the process holds) gives in both passes (see
    :func:`~astropipe.calibration.science.science_band_rows`). Nothing whole-frame is held:
    the output planes are on disk.
    """
    if cfg.tile_rows is not None:
        return cfg.tile_rows
    return science_band_rows(
        shape, budget_bytes=_budget(cfg, workers), margin=cosmics_margin(cfg.cosmics)
    )


def science_cols(
    cfg: CalibrationConfig, shape: tuple[int, int], workers: int, band_rows: int
) -> int | None:
    """Columns per astroscrappy tile for bands of ``band_rows`` (None: whole rows)."""
    return science_tile_cols(
        shape,
        band_rows=band_rows,
        budget_bytes=_budget(cfg, workers),
        margin=cosmics_margin(cfg.cosmics),
    )


def _pass_rows(cfg: CalibrationConfig, shape: tuple[int, int]) -> int:
    """Rows per band of a statistics pass over a written plane (~64 bytes a pixel)."""
    if cfg.tile_rows is not None:
        return cfg.tile_rows
    return max(1, _budget(cfg, 1) // (64 * max(shape[1], 1)))


def _science_task(
    sp: SciencePlan,
    cfg: CalibrationConfig,
    built: Mapping[str, Master],
    master_sha: Mapping[str, str],
    out_dir: Path,
    band_rows: int | None = None,
    tile_cols: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Calibrate and write one science frame; return its name and metrics."""
    roles = {"bias": sp.bias, "flat": sp.flat} | ({"dark": sp.dark} if sp.dark else {})
    cal = write_science(
        sp.frame,
        cfg,
        out_dir / f"{sp.frame.path.stem}.fits",
        bias=built[sp.bias],
        flat=built[sp.flat],
        dark=built[sp.dark] if sp.dark else None,
        masters={r: (n, master_sha[n]) for r, n in roles.items()},
        band_rows=band_rows,
        tile_cols=tile_cols,
    )
    log.info("%s: calibrated, %d cosmic-ray pixels", sp.frame.name, cal.cosmic_pixels)
    return sp.frame.name, {
        "cosmic_ray_pixels": cal.cosmic_pixels,
        "saturated_pixels": cal.counts["saturated"],
        "bad_flat_pixels": cal.counts["bad_flat"],
        "nonfinite_pixels": cal.counts["nonfinite"],
        "sky_median": sky_median(cal, band_rows=_pass_rows(cfg, sp.frame.trimmed_shape)),
        **roles,
    }


def run(
    params: Mapping[str, Any], *, dry_run: bool = False, progress: bool = False, **extra: Any
) -> dict[str, Any]:
    """Run calibrate_images on the ``calibration`` section of ``params``.

    Parameters
    ----------
    params
        The full composed params mapping (params.yaml).
    dry_run
        Discover, classify and validate only; write nothing.
    progress
        Show dask's progress bar over the science frames on stderr (:mod:`astropipe.progress`).

    Returns
    -------
    dict
        The metrics summary (also written to ``calibration.outputs.metrics``).
    """
    cfg = CalibrationConfig.from_params(params)
    compute = ComputeConfig.from_params(params)
    quarantined: dict[Path, str] = {}
    plan, n_skipped = plan_from_params(cfg, quarantine=quarantined)
    frames_count = {**plan.counts, "skipped": n_skipped}
    # Names, not paths: the metrics must not depend on where the inputs sit.
    quarantine_report = {
        p.name: reason.replace(str(p), p.name) for p, reason in sorted(quarantined.items())
    }
    if dry_run:
        return {
            "frames": frames_count,
            "masters": [m.name for m in plan.masters],
            "science": [s.frame.name for s in plan.science],
            "quarantined": quarantine_report,
        }
    inputs = {relpath(f.path): sha256_file(f.path) for m in plan.masters for f in m.frames} | {
        relpath(s.frame.path): sha256_file(s.frame.path) for s in plan.science
    }
    master_sha: dict[str, str] = {}
    metrics_masters: dict[str, Any] = {}
    metrics_science: dict[str, Any] = {}
    with (
        scheduler(compute),
        atomic_dir(cfg.outputs.masters) as mdir,
        atomic_dir(cfg.outputs.science) as sdir,
    ):
        names = {f.name: inputs[relpath(f.path)] for m in plan.masters for f in m.frames}
        # each master is written band by band into its file and read back from it
        built = build_masters(plan, cfg, workers=compute.workers, directory=mdir, inputs=names)
        for master in built.values():
            assert master.path is not None
            master_sha[master.name] = sha256_file(master.path)
            metrics_masters[master.name] = master_metrics(
                master, band_rows=_pass_rows(cfg, master.shape)
            )
        # One dask task per science frame: it calibrates straight into its file and returns
        # only its metrics, so at most compute.workers frames' bands are in memory at once.
        tasks = []
        for sp in plan.science:
            shape = sp.frame.trimmed_shape
            rows = science_rows(cfg, shape, compute.workers)
            cols = (
                None
                if cfg.tile_rows is not None
                else science_cols(cfg, shape, compute.workers, rows)
            )
            tasks.append(
                dask.delayed(_science_task, pure=True)(
                    sp, cfg, built, master_sha, Path(sdir), rows, cols
                )
            )
        with dask_bar(enabled=progress):  # stderr only: never in outputs or metrics
            computed = dask.compute(*tasks)
        for name, values in computed:
            metrics_science[name] = values
    metrics = {
        "frames": frames_count,
        "quarantined": quarantine_report,
        "masters": metrics_masters,
        "science": metrics_science,
        "cosmic_ray_pixels_total": sum(v["cosmic_ray_pixels"] for v in metrics_science.values()),
        "inputs_sha256": inputs_digest(inputs),
    }
    write_json(metrics, cfg.outputs.report)
    # the DVC metric: a few numbers a person compares across experiments, not every frame
    write_json({k: metrics[k] for k in METRIC_KEYS}, cfg.outputs.metrics)
    return metrics
