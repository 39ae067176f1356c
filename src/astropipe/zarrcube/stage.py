"""The ``fits_to_zarr`` stage: one collection's FITS series → ``<output>.zarr`` + metrics."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from astropipe.compute import ComputeConfig
from astropipe.io.tables import write_json
from astropipe.zarrcube.config import ZarrConfig
from astropipe.zarrcube.discover import list_inputs
from astropipe.zarrcube.layouts import layout_for
from astropipe.zarrcube.writer import WriteOptions, write_collection

__all__ = ["run"]

log = logging.getLogger(__name__)

#: Summary keys that describe one run rather than the store (kept out of the metrics file).
_RUN_ONLY = ("written", "skipped", "repaired")


def run(
    params: Mapping[str, Any],
    *,
    dry_run: bool = False,
    collection: str,
    progress: bool = False,
) -> dict[str, Any]:
    """Convert collection ``collection`` (a key of ``zarr.collections``) to its Zarr store.

    Parameters
    ----------
    params
        The full params mapping; the ``zarr`` and ``compute`` sections are read (the time
        steps are read, encoded and written as tasks on ``compute.scheduler``).
    dry_run
        Scan inputs and plan the writes; write nothing (no store, no metrics).
    collection
        ``lwa``, ``ccd`` or any other configured collection.
    progress
        Show progress bars (the ``astropipe`` command turns them on when interactive).

    Returns
    -------
    dict
        Time steps in the store, written / skipped this run, input files, corrections. The
        metrics file gets the same minus the per-run counts (written, skipped).

    Raises
    ------
    ConfigError, MissingInputError, InputFileError, GridMismatchError, LockedError
    """
    cfg = ZarrConfig.from_params(params)
    col = cfg.collection(collection)
    options = WriteOptions(
        chunks=cfg.chunks,
        zarr_format=cfg.zarr_format,
        compressor=cfg.compressor,
        rebuild=cfg.rebuild,
        read_workers=cfg.read_workers,
    )
    # what defines the store's content; rebuild, read_workers and the output paths do not
    recorded = {
        "collection": {
            k: v for k, v in dataclasses.asdict(col).items() if k in ("kind", "input_dir", "glob")
        },
        **{k: v for k, v in options.record(col.kind).items() if k != "kind"},
    }
    summary = write_collection(
        layout_for(col.kind, read_workers=cfg.read_workers),
        list_inputs(col.input_dir, col.glob),
        Path(col.output),
        collection=collection,
        options=options,
        config=recorded,
        compute=ComputeConfig.from_params(params),
        progress=progress,
        dry_run=dry_run,
    )
    summary["store"] = col.output
    if not dry_run:
        # The metric describes the store, not this run: written/skipped depend on what earlier
        # runs left (an append vs a fresh clone), and would make the DVC metric churn.
        write_json({k: v for k, v in summary.items() if k not in _RUN_ONLY}, col.metrics)
        log.info(
            "%s: wrote %d time step(s), skipped %d already in the store",
            collection,
            summary.get("written", 0),
            summary.get("skipped", 0),
        )
    return summary
