"""The ``ingest_tess`` stage: TESS, Kepler and K2 light-curve FITS → ``data/raw/tess/``.

Outputs (paths from ``tess.outputs``):

- ``fits/<input name>/<path below the input directory>``: every file that was read, byte for
  byte (a quarantined file is not copied; it is listed in the report);
- ``lightcurves.parquet``: :data:`~astropipe.tess.columns.TESS_LIGHTCURVE_SCHEMA`, one row per
  cadence with a finite TIME, MJD in TDB, sorted by light curve (object, mission, season,
  product, cadence) then time, so time increases within every light curve; units and
  provenance (input SHA-256s, the ``tess`` params, the time scale, the per-file reading
  records, the QUALITY bits each layout may set) in the file metadata;
- the report (per-file records, quarantined files with the reason, duplicate cadences dropped)
  and the metrics JSON (counts only: no paths that depend on the machine, no timings).

Sample mode (``tess.source: sample``) reads every file matching ``tess.pattern`` under each
``tess.inputs`` directory, in sorted order. Live mode reads files downloaded from MAST into a
cache (:func:`_live_files`); from there on both modes are the same code.

Each file is read as one task on the ``compute`` workers (:func:`astropipe.compute.workers`:
synchronous, threads, processes or an existing dask cluster); tasks read by absolute path and
return their rows, reading record or quarantine reason as data, merged in input order, so the
outputs do not depend on the scheduler or the number of workers.

The output directory is built in a temporary sibling and swapped in at the end, under
``<outputs.dir>.lock``, so a failed run leaves the previous output untouched and a second run
on the same outputs is refused. A run in which no file is readable fails instead of replacing
good outputs with empty ones.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from astropipe.compute import ComputeConfig, workers
from astropipe.config import from_mapping
from astropipe.errors import AstropipeError, ConfigError, InputFileError, MissingInputError
from astropipe.io.atomic import atomic_dir, remove_stale_temps
from astropipe.io.lock import OutputLock
from astropipe.io.tables import write_json, write_parquet
from astropipe.lightcurve import FLAG_QUALITY_MASKED
from astropipe.mast.config import MastClientConfig
from astropipe.provenance import provenance, relpath, sha256_file
from astropipe.tess.columns import (
    CADENCE_KEY,
    KNOWN_QUALITY_BITS_KEY,
    SEGMENT,
    SORT_KEY,
    TESS_LIGHTCURVE_UNITS,
    known_quality_bits,
    read_known_quality_bits,
)
from astropipe.tess.config import TessConfig
from astropipe.tess.reader import ReadResult, read_lightcurves

__all__ = [
    "SEGMENT",
    "CADENCE_KEY",
    "SORT_KEY",
    "InputFile",
    "check_limit",
    "input_files",
    "mast_client_config",
    "known_quality_bits",
    "read_known_quality_bits",
    "run",
]

log = logging.getLogger(__name__)

#: The counts written to ``tess.outputs.metrics``: what a person compares across experiments
#: (`dvc metrics show`, `dvc exp show`). The breakdowns by layout and mission, the settings
#: echoed back and new keys stay in the report (``tess.outputs.report``) only.
METRIC_KEYS = (
    "files_read", "files_quarantined", "light_curves", "objects", "rows",
    "quality_flagged", "duplicate_cadences_dropped",
)  # fmt: skip


@dataclass(frozen=True)
class InputFile:
    """A light-curve file to read and the path it is kept under, relative to ``outputs.fits``."""

    path: Path
    name: str


def check_limit(limit: int | None) -> None:
    """Refuse a ``--limit`` that is not a positive integer (0 or -1 would read nothing)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(
            f"--limit {limit}: expected a positive number of files, or no --limit to read "
            "everything; nothing was read or written."
        )


def _sample_files(cfg: TessConfig) -> list[InputFile]:
    files = []
    for name, directory in sorted(cfg.inputs.items()):
        base = Path(directory)
        if not base.is_dir():
            raise MissingInputError(
                f"tess.inputs.{name}: {directory} is not a directory; point it at a directory "
                "of light-curve FITS files (e.g. data/sample/tess)."
            )
        for path in sorted(base.glob(cfg.pattern)):
            if path.is_file():  # a directory named *.fits is no input
                files.append(InputFile(Path(relpath(path)), f"{name}/{path.relative_to(base)}"))
    return files


def _live_files(
    cfg: TessConfig, *, limit: int | None, client: MastClientConfig | None
) -> list[Path]:
    """Download the configured MAST light curves into the cache; return their FITS paths.

    The live branch: the only place that differs from sample mode. The files it returns are
    read by the same reader as sample files (see :mod:`astropipe.tess.live`).
    """
    from astropipe.tess.live import fetch_light_curves

    if client is None:
        raise ConfigError(
            "tess.source=live: the MAST connection (mast.client) was not given; run the stage "
            "with the full params (both the tess and mast sections)."
        )
    paths, info = fetch_light_curves(cfg.live, client, limit=limit)
    fresh = sum(1 for r in info["products"] if r.get("cached") is False)
    log.info("tess live: %d light curves (%d downloaded, rest cached)", len(paths), fresh)
    return paths


def mast_client_config(params: Mapping[str, Any]) -> MastClientConfig:
    """``mast.client`` from ``params``: how live mode connects to MAST."""
    mast = params.get("mast")
    if not isinstance(mast, Mapping) or "client" not in mast:
        raise ConfigError(
            "tess.source=live connects with mast.client, but params has no mast.client "
            "section; run `make params`."
        )
    return from_mapping(MastClientConfig, mast["client"], where="mast.client").validate()


def input_files(
    cfg: TessConfig, *, limit: int | None = None, client: MastClientConfig | None = None
) -> list[InputFile]:
    """The files a run reads, in order (sample: sorted by input name, then path).

    Raises
    ------
    MissingInputError
        An input directory does not exist.
    InputFileError
        No file matches ``tess.pattern`` in any input.
    """
    if cfg.source == "live":
        # Kept under the dataURI's own folders (as in the cache), so two products with one
        # file name in different collections never overwrite each other.
        cache = Path(cfg.live.cache_dir).resolve()
        files = [
            InputFile(Path(relpath(p)), f"live/{Path(p).resolve().relative_to(cache).as_posix()}")
            for p in _live_files(cfg, limit=limit, client=client)
        ]
    else:
        files = _sample_files(cfg)
    if not files:
        where = ", ".join(f"{k}: {v}" for k, v in sorted(cfg.inputs.items()))
        raise InputFileError(
            f"tess.inputs ({where}): no file matches tess.pattern={cfg.pattern!r}; nothing was "
            "read or written."
        )
    return files[:limit] if limit is not None else files


def _read(
    files: list[InputFile], cfg: TessConfig, compute: ComputeConfig, progress: bool
) -> ReadResult:
    """Read every file as a task on the ``compute`` workers, merged in input order."""
    with workers(compute) as pool:
        result = read_lightcurves(
            [f.path for f in files],
            cfg.read.reader(),
            fail=cfg.on_error == "fail",
            pool=pool,
            progress=progress,
        )
    if cfg.source == "live" and cfg.live.max_points is not None:
        from astropipe.tess.live import downsample

        result = downsample(result, cfg.live.max_points)
    if not result.files:
        first = result.quarantined[0]["reason"] if result.quarantined else "no reason recorded"
        raise InputFileError(
            f"tess.inputs: 0 of {len(files)} light-curve files readable (first: {first}); "
            f"nothing written, {cfg.outputs.dir} keeps its previous content."
        )
    return result


def _drop_duplicates(result: ReadResult) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Keep one row per :data:`CADENCE_KEY`; return the table and what was dropped.

    The same cadence read from two files (a newer data release next to an older one, two cuts
    of one light curve) is kept from the file with the highest DATA_REL, then the first file in
    path order. Rows without a cadence number are never taken for duplicates.
    """
    table = result.table
    rows = np.array([f["rows"] for f in result.files], dtype=np.int64)
    file_of_row = np.repeat(np.arange(len(rows)), rows)
    release = [f.get("data_release") for f in result.files]
    order = sorted(range(len(rows)), key=lambda i: (-(release[i] or -1), i))
    priority = np.empty(len(rows), dtype=np.int64)
    priority[order] = np.arange(len(rows))
    keys = table.select(list(CADENCE_KEY)).to_pandas()
    keys["file"] = file_of_row
    keys = keys.iloc[np.argsort(priority[file_of_row], kind="stable")]
    has_cadence = keys["cadenceno"].notna()
    dup = keys.duplicated(subset=list(CADENCE_KEY), keep="first") & has_cadence
    if not dup.any():
        return table, []
    winner = keys.groupby(list(CADENCE_KEY), dropna=False, sort=False)["file"].transform("first")
    dropped = []
    for i in sorted(set(keys.loc[dup, "file"])):
        mine = dup & (keys["file"] == i)
        kept_from = sorted({result.files[j]["file"] for j in winner[mine]})
        dropped.append(
            {
                "file": result.files[i]["file"],
                "rows_dropped": int(mine.sum()),
                "kept_from": kept_from,
            }
        )
        log.warning(
            "%s: %d cadences already read from %s; kept there", dropped[-1]["file"],
            dropped[-1]["rows_dropped"], ", ".join(kept_from),
        )  # fmt: skip
    keep = np.ones(table.num_rows, dtype=bool)
    keep[keys.index[dup].to_numpy()] = False
    return table.filter(pa.array(keep)), dropped


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in SORT_KEY])


def _counts(values: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(values).to_pylist()
    return {
        str(c["values"]): int(c["counts"]) for c in sorted(counts, key=lambda c: str(c["values"]))
    }


def _summary(
    cfg: TessConfig,
    files: list[InputFile],
    result: ReadResult,
    table: pa.Table,
    duplicates: list[dict[str, Any]],
) -> dict[str, Any]:
    segments = table.select(list(SEGMENT)).to_pandas().drop_duplicates()
    flags = table["flags"].to_numpy()
    flux = table["flux"].to_numpy(zero_copy_only=False)
    return {
        "source": cfg.source,
        "flux_column": cfg.read.flux_column,
        "quality": cfg.read.quality,
        "files": len(files),
        "files_read": len(result.files),
        "files_quarantined": len(result.quarantined),
        "files_by_layout": _counts(pa.chunked_array([[f["layout"] for f in result.files]])),
        "rows": table.num_rows,
        "rows_by_mission": _counts(table["mission"]),
        "objects": len(set(table["object_id"].to_pylist())),
        "light_curves": len(segments),
        "nan_time_dropped": sum(int(f["nan_time_dropped"]) for f in result.files),
        "duplicate_cadences_dropped": sum(d["rows_dropped"] for d in duplicates),
        "quality_flagged": int(np.count_nonzero(flags & FLAG_QUALITY_MASKED)),
        "flux_nonfinite": int(np.count_nonzero(~np.isfinite(flux))),
    }


def run(
    params: Mapping[str, Any],
    *,
    dry_run: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run ingest_tess with the ``tess`` section of ``params``.

    Parameters
    ----------
    params
        The composed parameters (params.yaml or :func:`astropipe.config.compose`).
    dry_run
        Read and summarise, but write nothing.
    limit
        Read at most this many files (the first ones in order).
    progress
        Show a progress bar.

    Returns
    -------
    dict
        The stage metrics (also written to ``tess.outputs.metrics`` unless ``dry_run``).

    Raises
    ------
    ConfigError
        A bad ``tess`` or ``compute`` section or ``limit``; live mode without a
        ``mast.client`` section; no dask scheduler at ``compute.address``.
    MissingInputError, InputFileError
        An input directory is missing, no file matches, or no file is readable (nothing is
        written then). With ``tess.on_error=fail``, the first unreadable file.
    LockedError
        Another run holds the outputs' lock.
    """
    check_limit(limit)
    cfg = TessConfig.from_params(params)
    out = cfg.outputs
    out_dir = Path(out.dir)
    for name in ("fits", "lightcurves"):
        target = Path(getattr(out, name))
        if out_dir.resolve() not in target.resolve().parents:
            raise AstropipeError(
                f"tess.outputs.{name}={target} is outside tess.outputs.dir={out_dir}; keep every "
                "ingest_tess output under one directory (it is one DVC output)."
            )
    if Path(out.fits).resolve() in Path(out.lightcurves).resolve().parents:
        raise AstropipeError(
            f"tess.outputs.lightcurves={out.lightcurves} is inside tess.outputs.fits={out.fits}; "
            "keep the table next to the FITS directory."
        )
    client = mast_client_config(params) if cfg.source == "live" else None
    if dry_run and client is not None:  # a live dry run sends nothing and downloads nothing
        from astropipe.tess.live import planned_requests

        return {
            "dry_run": True,
            "source": cfg.source,
            "requests": planned_requests(cfg.live, client, limit=limit),
            "outputs": asdict(out),
        }
    compute = ComputeConfig.from_params(params)
    files = input_files(cfg, limit=limit, client=client)
    if dry_run:
        result = _read(files, cfg, compute, progress)
        table, duplicates = _drop_duplicates(result)
        return {
            "dry_run": True,
            **_summary(cfg, files, result, table, duplicates),
            "quarantined": result.quarantined,
            "outputs": asdict(out),
        }
    with OutputLock(out_dir, writer="ingest_tess"):
        # under the lock no other writer is alive: every temporary sibling is a killed run's
        for target in (out_dir, Path(out.report), Path(out.metrics)):
            remove_stale_temps(target)
        summary, report = _write_outputs(cfg, params, files, compute, progress)
        write_json(report, out.report)
        write_json({k: summary[k] for k in METRIC_KEYS}, out.metrics)
    log.info("ingest_tess: %s", summary)
    return summary


def _write_outputs(
    cfg: TessConfig,
    params: Mapping[str, Any],
    files: list[InputFile],
    compute: ComputeConfig,
    progress: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build every output in a temporary sibling of ``outputs.dir`` and swap it in."""
    out = cfg.outputs
    out_dir = Path(out.dir)
    result = _read(files, cfg, compute, progress)
    table, duplicates = _drop_duplicates(result)
    table = _sorted(table)
    kept_as = {f.path.as_posix(): f.name for f in files}
    records = [{**f, "kept_as": kept_as[f["file"]]} for f in result.files]
    quarantined = [{**q, "sha256": _sha256_or_none(q["file"])} for q in result.quarantined]
    reader = cfg.read.reader()
    prov = {
        **provenance(
            stage="ingest_tess",
            inputs={f["file"]: f["sha256"] for f in result.files},
            params=params["tess"],
            source=cfg.source,
        ),
        "time_scale": "TDB",
        KNOWN_QUALITY_BITS_KEY: known_quality_bits(reader),
        "files": records,
    }
    scales = sorted({f["time"]["scale"] for f in result.files})
    if scales != ["TDB"]:  # the reader converts no scale; a change there must show up here
        raise InputFileError(f"tess: time scales {scales} read; only TDB is written as MJD (TDB).")
    with atomic_dir(out_dir) as tmp:
        rel = lambda p: tmp / Path(p).resolve().relative_to(out_dir.resolve())  # noqa: E731
        for r in records:  # the originals of every file read, unmodified
            dest = rel(out.fits) / r["kept_as"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(r["file"], dest)
        write_parquet(table, rel(out.lightcurves), provenance=prov, units=TESS_LIGHTCURVE_UNITS)
    summary = _summary(cfg, files, result, table, duplicates)
    report = {
        **summary,
        "read": records,
        "quarantined": quarantined,
        "duplicates": duplicates,
    }
    return summary, report


def _sha256_or_none(path: str) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None
