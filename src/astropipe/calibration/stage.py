"""The ``calibrate_images`` stage: raw CCD frames → master frames and calibrated science frames.

Outputs (paths from ``calibration.outputs``):

- ``masters/<kind>_<instrument>_<binning>[_<filter>].fits``: master bias (e-), dark (e-/s)
  and flat (normalised), each with an ``ERR`` extension;
- ``science/<raw name>.fits``: calibrated frames with ``SCI``, ``ERR``, ``MASK``;
- the report JSON: frames per type, cosmic-ray pixels per frame, noise of each master,
  quarantined frames; the metrics JSON: frames per type and cosmic-ray pixels in total.

Both output directories are built in temporary siblings and swapped in at the end, so a
failed run leaves the previous outputs untouched.

The masters and the science frames are dask graphs computed under ``compute``
(:func:`astropipe.compute.scheduler`: synchronous, threads, processes or an existing dask
cluster); their tasks name every file by absolute path and return only numbers, so the outputs
are byte-identical on every scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask

from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.cosmics import cosmics_margin
from astropipe.calibration.crchild import release_free_heap
from astropipe.calibration.frames import FrameInfo, HeaderValueError, discover
from astropipe.calibration.masters import (
    Master,
    build_masters,
    detector_for,
    master_metrics,
    master_tile_rows,
)
from astropipe.calibration.plan import CalibrationPlan, MasterSpec, SciencePlan, make_plan
from astropipe.calibration.science import (
    LEAK_BYTES_PER_PIXEL,
    cosmics_band_rows,
    cosmics_handed_pixels,
    cosmics_leak_bytes,
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

__all__ = [
    "run",
    "plan_from_params",
    "absolute_plan",
    "tile_rows",
    "science_bands",
    "science_rows",
    "science_cols",
    "start_footprint",
    "ScienceBands",
]

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


def absolute_plan(plan: CalibrationPlan) -> CalibrationPlan:
    """The same plan with every frame named by its absolute path.

    The masters and science frames are computed as dask tasks; on a cluster a worker runs
    in another working directory, where a relative path names nothing.
    """

    def frame(f: FrameInfo) -> FrameInfo:
        return replace(f, path=f.path.resolve())

    return replace(
        plan,
        masters=[replace(m, frames=tuple(frame(f) for f in m.frames)) for m in plan.masters],
        science=[replace(sp, frame=frame(sp.frame)) for sp in plan.science],
    )


def tile_rows(cfg: CalibrationConfig, spec: MasterSpec, workers: int) -> int:
    """Band height for a master (see :func:`~astropipe.calibration.masters.master_tile_rows`)."""
    return master_tile_rows(cfg, spec, workers)


def start_footprint() -> int:
    """The process's resident bytes now: measured once at the start of :func:`run`, when
    the interpreter and the libraries are loaded and no pixel is held yet."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _budget(cfg: CalibrationConfig, workers: int, footprint: int) -> int:
    """Bytes each of ``workers`` may use: ``memory_limit`` less the ``footprint`` measured
    at the start of the stage (interpreter, libraries), at least an eighth of the limit.

    The footprint, not the current RSS: after the masters the RSS also holds freed heap that
    glibc keeps, which would shrink every later band to the floor for no benefit."""
    limit = parse_bytes(cfg.memory_limit)
    if footprint > limit // 2:
        log.warning(
            "calibration.memory_limit=%s: the process held %.0f MB at start; working in "
            "small bands (raise the limit for speed)",
            cfg.memory_limit,
            footprint / 1e6,
        )
    return max(limit - footprint, limit // 8) // max(workers, 1)


@dataclass(frozen=True)
class ScienceBands:
    """How one science frame is cut: rows per band of the calibration pass, rows per band and
    columns per tile of the cosmic-ray pass, and bands per cosmic-ray child (None: the pass
    runs in this process)."""

    rows: int
    cr_rows: int
    cols: int | None
    tasks_per_child: int | None


def science_bands(
    cfg: CalibrationConfig, shape: tuple[int, int], workers: int, *, footprint: int
) -> ScienceBands:
    """Band sizes for calibrating science frames of ``shape``, ``workers`` at a time, from
    ``B`` = one frame's share of ``memory_limit`` less the start ``footprint`` (see
    docs/calibration.md, "Band sizes"). conf ``tile_rows`` sets both passes' rows (and
    astroscrappy then gets whole rows). The cosmic-ray pass moves to a child process when the
    leak it would leave here (a byte per pixel handed to astroscrappy) exceeds
    :func:`~astropipe.calibration.science.cosmics_leak_bytes`; the child is replaced before
    its leak does."""
    margin = cosmics_margin(cfg.cosmics)
    budget = _budget(cfg, workers, footprint)
    if cfg.tile_rows is not None:
        rows = cr_rows = cfg.tile_rows
        cols = None
    else:
        rows = science_band_rows(shape, budget_bytes=budget)
        cr_rows = cosmics_band_rows(shape, budget_bytes=budget, margin=margin)
        cols = science_tile_cols(shape, band_rows=cr_rows, budget_bytes=budget, margin=margin)
    tasks = None
    if cfg.cosmics.enabled:
        most, total = cosmics_handed_pixels(shape, band_rows=cr_rows, tile_cols=cols, margin=margin)
        leak = cosmics_leak_bytes(budget)
        if total * LEAK_BYTES_PER_PIXEL > leak:
            tasks = max(1, leak // max(most * LEAK_BYTES_PER_PIXEL, 1))
    return ScienceBands(rows, cr_rows, cols, tasks)


def science_rows(
    cfg: CalibrationConfig, shape: tuple[int, int], workers: int, *, footprint: int
) -> int:
    """Rows per band of the calibration pass (:func:`science_bands`)."""
    return science_bands(cfg, shape, workers, footprint=footprint).rows


def science_cols(
    cfg: CalibrationConfig, shape: tuple[int, int], workers: int, *, footprint: int
) -> int | None:
    """Columns per astroscrappy tile (None: whole rows; :func:`science_bands`)."""
    return science_bands(cfg, shape, workers, footprint=footprint).cols


def _pass_rows(cfg: CalibrationConfig, shape: tuple[int, int], footprint: int) -> int:
    """Rows per band of a statistics pass over a written plane (~64 bytes a pixel)."""
    if cfg.tile_rows is not None:
        return cfg.tile_rows
    return max(1, _budget(cfg, 1, footprint) // (64 * max(shape[1], 1)))


def _science_task(
    sp: SciencePlan,
    cfg: CalibrationConfig,
    built: Mapping[str, Master],
    master_sha: Mapping[str, str],
    out_dir: Path,
    bands: ScienceBands | None = None,
    footprint: int = 0,
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
        band_rows=None if bands is None else bands.rows,
        tile_cols=None if bands is None else bands.cols,
        cr_band_rows=None if bands is None else bands.cr_rows,
        cr_tasks_per_child=None if bands is None else bands.tasks_per_child,
    )
    release_free_heap()  # the frame's freed band buffers, before its statistics pass
    # nothing logged here: a task's log never reaches the stage's from a process or cluster
    # worker; the stage logs these counts (_log_science)
    return sp.frame.name, {
        "cosmic_ray_pixels": cal.cosmic_pixels,
        "saturated_pixels": cal.counts["saturated"],
        "bad_flat_pixels": cal.counts["bad_flat"],
        "nonfinite_pixels": cal.counts["nonfinite"],
        "sky_median": sky_median(cal, band_rows=_pass_rows(cfg, sp.frame.trimmed_shape, footprint)),
        **roles,
    }


def _log_science(sp: SciencePlan, values: Mapping[str, Any]) -> None:
    """Log what :func:`_science_task` counted in one frame, in the stage's process."""
    n_bad = int(values["nonfinite_pixels"])
    if n_bad:
        rows, cols = sp.frame.trimmed_shape
        log.warning(
            "%s: %d NaN/inf pixel(s) (%.3g%%) flagged NONFINITE in MASK",
            sp.frame.path, n_bad, 100.0 * n_bad / (rows * cols),
        )  # fmt: skip
    log.info("%s: calibrated, %d cosmic-ray pixels", sp.frame.name, values["cosmic_ray_pixels"])


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
    footprint = start_footprint()
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
    plan = absolute_plan(plan)
    inputs = {relpath(f.path): sha256_file(f.path) for m in plan.masters for f in m.frames} | {
        relpath(s.frame.path): sha256_file(s.frame.path) for s in plan.science
    }
    master_sha: dict[str, str] = {}
    metrics_masters: dict[str, Any] = {}
    metrics_science: dict[str, Any] = {}
    with (
        scheduler(compute),
        atomic_dir(Path(cfg.outputs.masters).resolve()) as mdir,  # absolute: see absolute_plan
        atomic_dir(Path(cfg.outputs.science).resolve()) as sdir,
    ):
        names = {f.name: inputs[relpath(f.path)] for m in plan.masters for f in m.frames}
        # each master is written band by band into its file and read back from it
        built = build_masters(plan, cfg, workers=compute.workers, directory=mdir, inputs=names)
        for master in built.values():
            assert master.path is not None
            master_sha[master.name] = sha256_file(master.path)
            metrics_masters[master.name] = master_metrics(
                master, band_rows=_pass_rows(cfg, master.shape, footprint)
            )
        # the combine's freed stacks go back to the system (glibc keeps them otherwise), so
        # they do not sit beside the cosmic-ray child
        release_free_heap()
        # One dask task per science frame: it calibrates straight into its file and returns
        # only its metrics, so at most compute.workers frames' bands are in memory at once.
        tasks = []
        for sp in plan.science:
            bands = science_bands(cfg, sp.frame.trimmed_shape, compute.workers, footprint=footprint)
            log.info(
                "%s: bands of %d rows, cosmic-ray bands of %d rows in tiles of %s columns%s",
                sp.frame.name,
                bands.rows,
                bands.cr_rows,
                bands.cols or "all",
                ""
                if bands.tasks_per_child is None
                else f", in a child process replaced every {bands.tasks_per_child} bands",
            )
            tasks.append(
                dask.delayed(_science_task, pure=True)(
                    sp, cfg, built, master_sha, Path(sdir), bands, footprint
                )
            )
        with dask_bar(enabled=progress):  # stderr only: never in outputs or metrics
            computed = dask.compute(*tasks)
        for sp, (name, values) in zip(plan.science, computed, strict=True):
            _log_science(sp, values)
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
