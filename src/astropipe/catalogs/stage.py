"""The ``ingest_catalogs`` stage: KOI, TOI and K2 candidates → ``data/raw/catalogs/``.

Outputs (paths from ``catalogs.outputs``):

- ``koi.parquet``, ``toi.parquet``, ``k2.parquet``: one typed table per catalog ingested
  (:mod:`astropipe.catalogs.schemas`), sorted by id, with units and descriptions per field
  and the provenance (input SHA-256, or URL + query + answer SHA-256) in the file metadata;
- ``objects.parquet``: catalog entries ↔ light-curve objects (:mod:`astropipe.catalogs.link`);
- the report (quarantined rows, unlinked light-curve objects) and the metrics JSON.

Sample mode (the default) reads the archive CSVs in ``data/sample/catalogs`` and never opens a
connection. There is no K2 sample: in sample mode the K2 catalog is reported as unavailable
(and no ``k2.parquet`` is written), never replaced by anything else. Live mode asks the
archive's TAP service (:mod:`astropipe.catalogs.tap`), re-fetching only answers older than
their freshness. Either way the outputs are built in a temporary sibling of
``outputs.dir``, swapped in at the end under ``<outputs.dir>.lock``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import requests

from astropipe.catalogs.archive_csv import ParsedCatalog, parse_archive_csv
from astropipe.catalogs.config import CatalogsConfig
from astropipe.catalogs.link import OBJECTS_UNITS, build_objects, lightcurve_targets
from astropipe.catalogs.schemas import CATALOGS, CatalogSpec
from astropipe.catalogs.tap import (
    Clock,
    FetchCache,
    fetch_catalog,
    freshness,
    live_session,
    max_age_hours,
    tap_params,
    tap_query,
    utc_now,
)
from astropipe.errors import AstropipeError, ConfigError, MissingInputError
from astropipe.io.atomic import atomic_dir, remove_stale_temps
from astropipe.io.lock import OutputLock
from astropipe.io.tables import read_parquet, write_json, write_parquet
from astropipe.provenance import provenance, relpath, sha256_bytes, sha256_file
from astropipe.sources.http import safe_url

__all__ = ["run", "read_catalogs", "CatalogRead", "K2_SAMPLE_NOTE"]

log = logging.getLogger(__name__)

#: Why sample mode has no K2 table (in the metrics, the report and the docs).
K2_SAMPLE_NOTE = (
    "no K2 sample in data/sample/catalogs: the K2 candidates table (k2pandc) is live-only; "
    "run with catalogs.source=live to ingest it"
)


@dataclass
class CatalogRead:
    """One catalog as read: the parsed table and where it came from."""

    spec: CatalogSpec
    parsed: ParsedCatalog
    inputs: dict[str, str]  # name (relative path or URL) → SHA-256
    query: dict[str, Any] | None  # live: url, query; sample: None
    fetch: dict[str, Any] | None = None  # live: fetched or cached, and why (never written)


def _sample_path(cfg: CatalogsConfig, name: str) -> str | None:
    files = {"koi": cfg.sample.koi, "toi": cfg.sample.toi, "k2": cfg.sample.k2}
    return files[name]


def _name(path: Path) -> str:
    """An input's name in provenance: the configured relative path as written (a symlinked
    data/sample must not put an absolute path in the outputs), else relative to the cwd."""
    return path.as_posix() if not path.is_absolute() else relpath(path)


def _check(spec: CatalogSpec, cfg: CatalogsConfig):  # type: ignore[no-untyped-def]
    fail = cfg.on_error == "fail"
    return lambda body, where: parse_archive_csv(body, spec, where=where, fail=fail)


def read_catalogs(
    cfg: CatalogsConfig,
    *,
    now: datetime | None = None,
    session: requests.Session | None = None,
    force: bool = False,
) -> tuple[dict[str, CatalogRead], dict[str, str]]:
    """Read every configured catalog (sample files, or TAP answers fresh or re-fetched).

    Returns
    -------
    tuple
        Catalog name → :class:`CatalogRead` for those read, and catalog name → reason for
        those unavailable in this mode (K2 in sample mode).
    """
    reads: dict[str, CatalogRead] = {}
    unavailable: dict[str, str] = {}
    cache = FetchCache(cfg.cache_dir)
    for name in cfg.catalogs:
        spec = CATALOGS[name]
        if cfg.source == "sample":
            path = _sample_path(cfg, name)
            if path is None:
                unavailable[name] = (
                    K2_SAMPLE_NOTE if name == "k2" else f"catalogs.sample.{name} is null"
                )
                log.warning("%s: skipped: %s", name, unavailable[name])
                continue
            p = Path(path)
            if not p.is_file():
                raise MissingInputError(
                    f"{p}: catalogs.sample.{name} not found; copy it from the shared data "
                    "(see data/sample/catalogs/PROVENANCE.md) or set it to null."
                )
            data = p.read_bytes()
            parsed = _check(spec, cfg)(data, p.as_posix())
            reads[name] = CatalogRead(spec, parsed, {_name(p): sha256_bytes(data)}, None)
            continue
        session = session or live_session(cfg)
        parsed, info = fetch_catalog(
            cfg, spec, cache, session=session, now=now or utc_now(), check=_check(spec, cfg),
            force=force,
        )  # fmt: skip
        query = {"url": safe_url(cfg.tap.url), "params": tap_params(info["query"])}
        reads[name] = CatalogRead(spec, parsed, {info["url"]: info["sha256"]}, query, info)
    return reads, unavailable


def _lightcurve_targets(
    cfg: CatalogsConfig, *, missing: list[str] | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Light-curve objects of every configured table; a missing table is an error, unless
    ``missing`` is given (a dry run): then it is listed there and skipped."""
    frames, hashes = [], {}
    for path in cfg.link.lightcurves:
        p = Path(path)
        if not p.is_file() and missing is not None:
            missing.append(p.as_posix())
            continue
        if not p.is_file():
            raise MissingInputError(
                f"{p}: catalogs.link.lightcurves names a light-curve table that does not exist; "
                "build it with `dvc repro ingest_tess`, or remove it from the list."
            )
        frames.append(lightcurve_targets(read_parquet(p), where=p.as_posix()))
        hashes[_name(p)] = sha256_file(p)
    if not frames:
        return lightcurve_targets(
            pa.table({"mission": pa.array([], pa.string()), "target_id": pa.array([], pa.int64())})
        ), hashes
    return pd.concat(frames, ignore_index=True), hashes


def _limit(reads: dict[str, CatalogRead], limit: int | None) -> None:
    if limit is None:
        return
    for r in reads.values():
        r.parsed.table = r.parsed.table.slice(0, limit)


def _catalog_metrics(r: CatalogRead) -> dict[str, Any]:
    p = r.parsed
    return {
        "status": "ingested",
        "rows": p.table.num_rows,
        "rows_read": p.rows_read,
        "quarantined": len(p.quarantined),
        "duplicates_dropped": p.duplicates_dropped,
        "undeclared_columns_dropped": p.undeclared_columns,
        "descriptions_from": "comment block" if p.notes else "declared schema",
    }


def _metrics(summary: Mapping[str, Any]) -> dict[str, int]:
    """The few counts written to ``catalogs.outputs.metrics`` (`dvc metrics show`, `dvc exp
    show`): rows per ingested catalog, rows quarantined, the objects link. Statuses, reasons
    and the per-kind breakdowns stay in the report (``catalogs.outputs.report``) only."""
    ingested = {n: c for n, c in summary["catalogs"].items() if c["status"] == "ingested"}
    objects = summary["objects"]
    return {
        **{f"{name}_rows": c["rows"] for name, c in ingested.items()},
        "quarantined": sum(c["quarantined"] for c in ingested.values()),
        "objects": objects["rows"],
        "lightcurve_objects_linked": objects["lightcurve_objects_linked"],
    }


def _units(spec: CatalogSpec) -> dict[str, str]:
    return {c.name: c.unit for c in spec.columns if c.unit}


def check_limit(limit: int | None) -> None:
    """Refuse a ``--limit`` that is not a positive integer."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(
            f"--limit {limit}: expected a positive number of rows per catalog, or no --limit; "
            "nothing was read or written."
        )


def _plan(cfg: CatalogsConfig, now: datetime) -> list[dict[str, Any]]:
    """The requests a live run would make now, and which cached answers it would reuse."""
    cache = FetchCache(cfg.cache_dir)
    plan = []
    for name in cfg.catalogs:
        spec = CATALOGS[name]
        query = tap_query(cfg, spec)
        state = freshness(
            cache.entry(name), cache, url=safe_url(cfg.tap.url), query=query,
            max_age_h=max_age_hours(cfg, name), now=now,
        )  # fmt: skip
        plan.append(
            {
                "catalog": name,
                "url": safe_url(cfg.tap.url, tap_params(query)),
                "query": query,
                "max_age_h": max_age_hours(cfg, name),
                "would_fetch": not state.fresh,
                "why": state.reason,
            }
        )
    return plan


def run(
    params: Mapping[str, Any],
    *,
    dry_run: bool = False,
    limit: int | None = None,
    progress: bool = False,
    clock: Clock = utc_now,
    session: requests.Session | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run ingest_catalogs with the ``catalogs`` section of ``params``.

    Parameters
    ----------
    params
        The composed parameters (params.yaml or :func:`astropipe.config.compose`).
    dry_run
        Sample mode: read and summarise, write nothing. Live mode: print the requests a run
        would make and which cached answers are fresh; no network, nothing written.
    limit
        Keep at most this many rows of each catalog (the first in id order).
    progress
        Accepted for the CLI's sake; the catalogs are read in well under a second each.
    clock
        The time source of the freshness rule (tests inject one).
    session
        An HTTP session to use in live mode (tests pass one); a new one otherwise.
    force
        Live mode: fetch every catalog again, however fresh its cached answer.

    Returns
    -------
    dict
        The stage metrics (also written to ``catalogs.outputs.metrics`` unless ``dry_run``);
        in live mode with a ``fetch`` entry (fetched or cached, and why) that is never written.
    """
    del progress
    check_limit(limit)
    cfg = CatalogsConfig.from_params(params)
    if dry_run and cfg.source == "live":
        return {
            "dry_run": True,
            "source": "live",
            "requests": _plan(cfg, clock()),
            "cache_dir": cfg.cache_dir,
            "limit": limit,
            "outputs": _output_paths(cfg),
        }
    # sample mode never reads the clock: nothing in it may depend on the time of the run
    now = clock() if cfg.source == "live" else None
    reads, unavailable = read_catalogs(cfg, now=now, session=session, force=force)
    if not reads:  # nothing to write: keep the previous outputs rather than empty ones
        first = next(iter(unavailable.items()))
        raise ConfigError(
            f"catalogs.catalogs={cfg.catalogs}: none is available in {cfg.source} mode "
            f"({first[0]}: {first[1]}); nothing was written."
        )
    _limit(reads, limit)
    missing: list[str] | None = [] if dry_run else None
    targets, lc_hashes = _lightcurve_targets(cfg, missing=missing)
    objects, link_stats = build_objects({n: r.parsed.table for n, r in reads.items()}, targets)
    summary = _summary(cfg, reads, unavailable, objects, link_stats)
    fetch = {n: r.fetch for n, r in reads.items() if r.fetch is not None}
    if dry_run:
        if missing:  # not built yet (ingest_tess runs first): a real run would need them
            summary["objects"]["lightcurve_tables_missing"] = missing
        return {"dry_run": True, **summary, "outputs": _output_paths(cfg)}
    out_dir = Path(cfg.outputs.dir)
    for name in ("koi", "toi", "k2", "objects"):
        target = Path(_output_paths(cfg)[name])
        if out_dir.resolve() not in target.resolve().parents:
            raise AstropipeError(
                f"catalogs.outputs.{name}={target} is outside catalogs.outputs.dir={out_dir}; "
                "keep every ingest_catalogs output under one directory (it is one DVC output)."
            )
    report = {
        **summary,
        "quarantined": {n: r.parsed.quarantined for n, r in reads.items()},
        "unlinked_lightcurve_objects": link_stats["lightcurve_objects_unlinked"],
    }
    with OutputLock(out_dir, writer="ingest_catalogs"):
        for target in (out_dir, Path(cfg.outputs.report), Path(cfg.outputs.metrics)):
            remove_stale_temps(target)
        with atomic_dir(out_dir) as tmp:
            rel = lambda p: tmp / Path(p).resolve().relative_to(out_dir.resolve())  # noqa: E731
            paths = _output_paths(cfg)
            for name, r in reads.items():
                prov = provenance(
                    stage="ingest_catalogs",
                    inputs=r.inputs,
                    params=params["catalogs"],
                    source=cfg.source,
                    query=r.query,
                )
                write_parquet(
                    r.parsed.table, rel(paths[name]), provenance=prov, units=_units(r.spec)
                )
            inputs = {k: v for r in reads.values() for k, v in r.inputs.items()} | lc_hashes
            prov = provenance(stage="ingest_catalogs", inputs=inputs, params=params["catalogs"],
                              source=cfg.source)  # fmt: skip
            write_parquet(objects, rel(paths["objects"]), provenance=prov, units=OBJECTS_UNITS)
        write_json(report, cfg.outputs.report)
        write_json(_metrics(summary), cfg.outputs.metrics)
    log.info("ingest_catalogs: %s", summary)
    return {**summary, "fetch": fetch} if fetch else summary


def _output_paths(cfg: CatalogsConfig) -> dict[str, str]:
    o = cfg.outputs
    return {"dir": o.dir, "koi": o.koi, "toi": o.toi, "k2": o.k2, "objects": o.objects,
            "report": o.report, "metrics": o.metrics}  # fmt: skip


def _summary(
    cfg: CatalogsConfig,
    reads: dict[str, CatalogRead],
    unavailable: dict[str, str],
    objects: pa.Table,
    link: dict[str, Any],
) -> dict[str, Any]:
    catalogs: dict[str, Any] = {}
    for name in cfg.catalogs:
        if name in reads:
            catalogs[name] = _catalog_metrics(reads[name])
        else:
            catalogs[name] = {"status": "unavailable", "reason": unavailable[name]}
    return {
        "source": cfg.source,
        "catalogs": catalogs,
        "objects": {
            "rows": objects.num_rows,
            "lightcurve_tables": list(cfg.link.lightcurves),
            "linked_entries": link["linked_entries"],
            "linked_targets": link["linked_targets"],
            "lightcurve_objects": link["lightcurve_objects"],
            "lightcurve_objects_linked": link["lightcurve_objects_linked"],
            "lightcurve_objects_unlinked": {
                kind: len(v["object_ids"])
                for kind, v in link["lightcurve_objects_unlinked"].items()
            },
        },
    }
