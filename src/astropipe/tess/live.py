"""ingest_tess live mode: MAST light curves → the local download cache → the same reader.

``tess.source=live`` asks MAST for the light curves that ``tess.live`` describes, through the
client ingest_mast uses (:class:`astropipe.sources.mast.MastClient`, connection settings from
``mast.client``):

1. ``Mast.Caom.Filtered`` (``.Position`` for a cone): ``obs_collection``, ``dataproduct_type =
   timeseries``, ``target_name`` (TIC numbers), ``sequence_number`` = ``tess.live.sectors``,
   ``t_min``/``t_max`` ranges; every page until ``paging.rowsTotal``;
2. ``Mast.Caom.Products`` for those obsids, kept when they pass ``tess.live.products`` (light
   curves: ``productSubGroupDescription = LC``, ``productType = SCIENCE``, ``*_lc.fits``), one
   per ``dataURI``, sorted by file name; the first ``tess.live.limit`` (and ``--limit``);
3. each file downloaded into ``tess.live.cache_dir`` (or taken from it when its size matches
   the listing).

The cached files are then read exactly like sample files. :func:`downsample` applies
``tess.live.max_points`` to what was read.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from astropipe.errors import AstropipeError, InputFileError
from astropipe.mast.config import MastClientConfig, MastQuery
from astropipe.tess.config import TessLiveConfig
from astropipe.tess.reader import ReadResult

__all__ = ["live_query", "planned_requests", "fetch_light_curves", "downsample", "keep_every"]


def live_query(live: TessLiveConfig) -> MastQuery:
    """The CAOM query of ``tess.live`` (checked: bounded, a whole cone or none)."""
    return MastQuery(
        target_name=list(live.target_name),
        obs_collection=list(live.obs_collection),
        dataproduct_type=["timeseries"],
        sequence_number=list(live.sectors),
        t_min=live.t_min,
        t_max=live.t_max,
        ra=live.ra,
        dec=live.dec,
        radius=live.radius,
    ).validate("tess.live")


def _count(live: TessLiveConfig, limit: int | None) -> int | None:
    caps = [n for n in (live.limit, limit) if n is not None]
    return min(caps) if caps else None


def planned_requests(
    live: TessLiveConfig, client: MastClientConfig, *, limit: int | None = None
) -> dict[str, Any]:
    """What a live run would send and where files would go; sends nothing (the dry run)."""
    from astropipe.sources.mast import observation_request
    from astropipe.sources.redact import safe_url

    return {
        "invoke_url": safe_url(client.url),
        "observations": observation_request(live_query(live), pagesize=client.pagesize),
        "products": {
            "service": "Mast.Caom.Products",
            "params": {"obsid": "<obsid,...>"},
            "batch": client.products_batch,
            "keep": asdict(live.products),
        },  # fmt: skip
        "downloads": f"{safe_url(client.download_url)}?uri=<dataURI>",
        "cache_dir": live.cache_dir,
        "light_curves_at_most": _count(live, limit),
        "max_points": live.max_points,
    }


def fetch_light_curves(
    live: TessLiveConfig, client_cfg: MastClientConfig, *, limit: int | None = None
) -> tuple[list[Path], dict[str, Any]]:
    """Query MAST and fill the cache; return the light-curve files and what was asked.

    Returns
    -------
    (list of Path, dict)
        The cached files in product order, and ``{"requests", "responses", "products"}``:
        the requests sent, the SHA-256 of each answer, and per file its dataURI, size, SHA-256
        and whether it came from the cache.

    Raises
    ------
    InputFileError
        No observation or no light-curve product matches the query.
    ServiceError, ServiceResponseError
        From the client (one line naming the service and page, or the file).
    """
    from astropipe.sources.mast import MastClient, filter_products

    client = MastClient(client_cfg)
    query = live_query(live)
    obs = client.observations(query)
    ids = obs.table.column("obsid").to_pylist() if "obsid" in obs.table.column_names else []
    obsids = sorted({i for i in ids if i})
    if not obsids:
        raise InputFileError(
            f"tess.live: MAST has no observation for target_name={live.target_name} "
            f"sectors={live.sectors} obs_collection={live.obs_collection}; check the TIC "
            "number and sectors (nothing was downloaded or written)."
        )
    prods = client.products(obsids)
    table = filter_products(prods.table, live.products)
    rows = sorted(
        {r["dataURI"]: r for r in table.to_pylist() if r.get("dataURI")}.values(),
        key=lambda r: (str(r.get("productFilename")), r["dataURI"]),
    )
    if not rows:
        raise InputFileError(
            f"tess.live: {len(obsids)} observations but no product passes tess.live.products "
            f"({asdict(live.products)}); nothing was downloaded or written."
        )
    count = _count(live, limit)
    paths, records = [], []
    for row in rows[:count]:
        size = row.get("size")
        try:
            path, sha, cached = client.download(row["dataURI"], live.cache_dir, size=size)
        except AstropipeError as exc:
            if "cache path" in str(exc) or "expected 'mast:" in str(exc):
                # a dataURI that cannot be a file name: skip it, keep the others
                records.append({"dataURI": row["dataURI"], "skipped": str(exc)})
                continue
            raise
        paths.append(path)
        records.append({"dataURI": row["dataURI"], "size": size, "sha256": sha,
                        "cached": cached})  # fmt: skip
    if not paths:
        raise InputFileError(f"tess.live: every product was skipped ({records[0]['skipped']}).")
    info = {
        "requests": obs.requests + prods.requests,
        "responses": {**obs.responses, **prods.responses},
        "products": records,
    }
    return paths, info


def keep_every(n: int, max_points: int) -> int:
    """The step ``k = ceil(n / max_points)``: keeping rows 0, k, 2k, ... leaves <= max_points."""
    return max(1, (n + max_points - 1) // max_points)


def downsample(result: ReadResult, max_points: int) -> ReadResult:
    """Keep at most ``max_points`` cadences of each light curve (file), deterministically.

    In each file's rows (file order: cadence order, NaN times already dropped), a light curve of
    ``n > max_points`` rows keeps every k-th row starting with the first, ``k = ceil(n /
    max_points)`` (integer arithmetic: the same rows on every machine). Quality flags are kept
    with their rows; nothing is averaged. Each file record gets ``rows_before_downsampling``.
    """
    keep = np.zeros(result.table.num_rows, dtype=bool)
    files = []
    start = 0
    for rec in result.files:
        n = int(rec["rows"])
        k = keep_every(n, max_points)
        keep[start : start + n : k] = True
        kept = len(range(0, n, k))
        files.append({**rec, "rows": kept, "rows_before_downsampling": n} if kept < n else rec)
        start += n
    table = result.table.filter(pa.array(keep)) if not keep.all() else result.table
    return ReadResult(table=table, files=files, quarantined=result.quarantined)
