"""The ``validate`` stage: run every data contract, write the summary and data docs.

Contracts: the three ZTF tables (alerts, lightcurves, features), ``tess_lightcurves``
(ingest_tess's rows plus per-light-curve columns, :mod:`astropipe.validation.tess`), then
``frames`` (one row per calibrated FITS frame and master, calibrate_images) and ``cubes`` (one
row per Zarr store time step and frequency, fits_to_zarr), each a small summary table built one
frame / step at a time.

Order of work: check that every configured table, frame directory and store exists (a missing
one is an error naming the path and the command that builds it, before anything is written);
validate each contract, each one a task on the ``compute`` workers
(:func:`astropipe.compute.workers`; the frames summary a task per file, the cubes summary dask
reductions on the same workers through :meth:`astropipe.compute.Workers.dask`), by absolute
path, reports returned as data in contract order, so the outputs do not depend on the
scheduler; write the Markdown
data docs and ``summary.json``; only then, if a contract failed and
``validation.fail_on_error`` is true, raise :class:`~astropipe.errors.ValidationFailed` with
one line naming the artifact (the table, or the first offending frame file or cube step), the
column and the expectation — so the failure is visible in ``dvc metrics show``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from astropipe.compute import ComputeConfig, Workers, workers
from astropipe.errors import MissingInputError, ValidationFailed
from astropipe.validation.config import TABLES, ValidationConfig
from astropipe.validation.cubes import cubes_contract, cubes_table
from astropipe.validation.frames import frames_contract, frames_table
from astropipe.validation.report import failure_line, summarize, write_docs, write_summary
from astropipe.validation.runner import Suite, TableReport, run_suite
from astropipe.validation.suites import contract_for
from astropipe.validation.tess import tess_lightcurves_contract, tess_lightcurves_table

__all__ = ["run"]

log = logging.getLogger(__name__)

#: The summary's totals, written to ``validation.outputs.metrics`` (the stage's DVC metric).
METRIC_KEYS = ("success", "tables_validated", "expectations", "failed")


def _check_inputs(cfg: ValidationConfig) -> None:
    missing = [
        (path, f"table {name!r}", t.build)
        for name, t in cfg.tables.items()
        if not Path(path := t.path).is_file()
    ]
    if cfg.frames is not None:
        f = cfg.frames
        missing += [
            (d, f"frames directory ({role})", f.build)
            for role, d in (("masters", f.masters), ("science", f.science))
            if not Path(d).is_dir()
        ]
    if (t := cfg.tess_lightcurves) is not None and not Path(t.path).is_file():
        missing.append((t.path, "table 'tess_lightcurves'", t.build))
    if cfg.cubes is not None:
        missing += [
            (c.path, f"cube {name!r}", c.build)
            for name, c in cfg.cubes.collections.items()
            if not Path(c.path).is_dir()
        ]
    if missing:
        path, what, build = missing[0]
        more = f" (and {len(missing) - 1} more missing input(s))" if len(missing) > 1 else ""
        raise MissingInputError(f"{path}: {what} not found{more}; build it with `{build}`.")


def _abs(path: str) -> str:
    return str(Path(path).resolve())


def _suites(
    cfg: ValidationConfig,
    compute: ComputeConfig,
    pool: Workers,
    rows: dict[str, pd.DataFrame],
) -> list[tuple[str, Suite]]:
    """Every contract to run, in report order, named by what the docs hash them under.

    The frames and cubes summary tables are built here (frames: a task per file on ``pool``;
    cubes: dask reductions on ``pool``) and kept in ``rows`` for the docs;
    the ZTF and TESS tables are read (and hashed) by the suites' own tasks.
    """
    suites: list[tuple[str, Suite]] = []
    for name in TABLES:
        if name not in cfg.tables:
            continue
        tcfg = cfg.tables[name]
        contract = contract_for(name, tcfg, cfg.ranges)
        path = _abs(tcfg.path)
        suites.append((name, Suite(contract, Path(tcfg.path).as_posix(), read=path, digest=path)))
    if cfg.frames is not None:
        where = f"{Path(cfg.frames.masters).as_posix()}, {Path(cfg.frames.science).as_posix()}"
        rows["frames"] = df = frames_table(cfg.frames, pool=pool)
        suites.append(("frames", Suite(frames_contract(cfg.frames), where, frame=df)))
    if (tess := cfg.tess_lightcurves) is not None:
        contract = tess_lightcurves_contract(tess, cfg.ranges)
        path = _abs(tess.path)
        build = partial(tess_lightcurves_table, replace(tess, path=path))
        where = Path(tess.path).as_posix()
        suites.append(("tess_lightcurves", Suite(contract, where, build=build, digest=path)))
    if cfg.cubes is not None:
        where = ", ".join(Path(c.path).as_posix() for c in cfg.cubes.collections.values())
        with pool.dask():  # on the stage's own workers (one pool, one cluster connection)
            rows["cubes"] = df = cubes_table(cfg.cubes)
        suites.append(("cubes", Suite(cubes_contract(cfg.cubes), where, frame=df)))
    return suites


def run(
    params: Mapping[str, Any],
    *,
    dry_run: bool = False,
    context: Any | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Validate the tables, frames and cubes configured under ``validation``; return the summary.

    Parameters
    ----------
    params
        The full params dict (``params.yaml``); only ``validation`` is read.
    dry_run
        Validate and return the summary, but write nothing and never raise on a failed
        contract.
    context
        An existing GX data context to reuse (tests share one) under ``compute.scheduler:
        synchronous``; otherwise each worker thread makes its own ephemeral one.

    Returns
    -------
    dict
        The summary written to ``validation.outputs.summary``.

    Raises
    ------
    MissingInputError
        A configured table, frame directory or store does not exist; the message names the
        command that builds it.
    ValidationFailed
        A contract failed and ``fail_on_error`` is true (raised after writing the outputs).
    """
    del extra  # the CLI passes options other stages use (e.g. limit)
    cfg = ValidationConfig.from_params(params)
    compute = ComputeConfig.from_params(params)
    _check_inputs(cfg)
    rows: dict[str, pd.DataFrame] = {}  # the summary tables of frames and cubes, for the docs
    with workers(compute) as pool:
        suites = _suites(cfg, compute, pool, rows)
        # a given context only in this thread (synchronous); every worker thread has its own
        own = {"context": context} if context is not None and pool.kind == "synchronous" else {}
        done = list(pool.map(run_suite, [s for _, s in suites], **own))
    reports: list[TableReport] = [report for report, _ in done]
    hashes = {name: sha for (name, _), (_, sha) in zip(suites, done, strict=True) if sha}
    for report in reports:  # a cluster worker's log never reaches this one
        log.info(
            "%s: %d rows, %d/%d expectations passed",
            report.table,
            report.rows,
            len(report.outcomes) - len(report.failed),
            len(report.outcomes),
        )
    summary = summarize(reports)
    line = failure_line(reports, summary_path=cfg.outputs.summary)
    if dry_run:
        return summary
    write_docs(reports, cfg.outputs.docs, hashes=hashes, rows=rows)
    write_summary(summary, cfg.outputs.summary)
    # the totals only: `dvc metrics show` gets a few numbers, not every table's columns
    write_summary({k: summary[k] for k in METRIC_KEYS}, cfg.outputs.metrics)
    log.info("wrote %s and %s", cfg.outputs.summary, cfg.outputs.docs)
    if line is not None:
        if cfg.fail_on_error:
            raise ValidationFailed(line)
        log.warning("validation failed (fail_on_error is false): %s", line)
    return summary
