"""The ``ingest_mast`` stage: MAST CAOM observations and their products → ``data/raw/mast/``.

Outputs (paths from ``mast.outputs``):

- ``observations.parquet``: one row per CAOM observation, the columns and types the answers'
  ``fields`` declare (each column's MAST type in its field metadata), sorted by
  ``(obs_collection, obs_id, obsid, objID)`` and unique on ``(obsid, objID)`` (an observation
  has a row per plane: GALEX FUV and NUV share an obsid);
- ``products.parquet``: their products (``obsID, dataURI, productFilename, productType,
  productSubGroupDescription, size…``), filtered by ``mast.products``, sorted by
  ``(obsID, productFilename, dataURI)`` and unique on ``(obsID, dataURI)``;
- the report (quarantined answers with reasons, requests sent) and the metrics JSON.

``mast.source=sample`` (default) reads the recorded answers listed in ``mast.sample``;
``mast.source=live`` queries MAST with ``mast.query`` through
:class:`astropipe.sources.mast.MastClient`. Both go through the same envelope parser
(:mod:`astropipe.mast.envelope`). The output directory is built in a temporary sibling and
swapped in under ``<outputs.dir>.lock``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from astropipe.errors import AstropipeError, ConfigError, InputFileError, MissingInputError
from astropipe.io.atomic import atomic_dir, remove_stale_temps
from astropipe.io.lock import OutputLock
from astropipe.io.tables import write_json, write_parquet
from astropipe.mast.config import MastConfig
from astropipe.mast.envelope import concat_tables, parse_envelope, rows_to_table
from astropipe.provenance import provenance, relpath, sha256_bytes

__all__ = [
    "OBSERVATION_UNITS",
    "PRODUCT_UNITS",
    "PRODUCT_CORE",
    "read_recorded",
    "run",
]

log = logging.getLogger(__name__)

#: The counts written to ``mast.outputs.metrics``: what a person compares across experiments
#: (`dvc metrics show`, `dvc exp show`). The breakdowns by collection and product type, the
#: field counts and new keys stay in the report (``mast.outputs.report``) only.
METRIC_KEYS = ("answers_read", "observations", "products", "quarantined")

#: Units of the CAOM columns that have one (https://mast.stsci.edu/api/v0/_c_a_o_mfields.html).
OBSERVATION_UNITS = {
    "s_ra": "deg",
    "s_dec": "deg",
    "t_min": "d",
    "t_max": "d",
    "t_obs_release": "d",
    "t_exptime": "s",
    "em_min": "nm",
    "em_max": "nm",
}
PRODUCT_UNITS = {"size": "byte"}

#: Columns of an empty products table when no Products answer was fetched at all.
PRODUCT_CORE = pa.schema(
    [
        ("obsID", pa.string()),
        ("dataURI", pa.string()),
        ("productFilename", pa.string()),
        ("productType", pa.string()),
        ("productSubGroupDescription", pa.string()),
        ("size", pa.int64()),
    ]
)


def read_recorded(
    paths: list[str], *, kind: str
) -> tuple[pa.Table, dict[str, str], list[dict[str, str]]]:
    """Read recorded ``invoke`` answers through the live parser.

    Returns
    -------
    (pa.Table, dict, list)
        The stacked rows, ``relative path → SHA-256`` of the files read, and the quarantined
        files (``{"file", "reason"}``), each with one line saying why.

    Raises
    ------
    MissingInputError
        A listed file does not exist.
    InputFileError
        None of the files could be read.
    """
    tables, inputs, quarantined = [], {}, []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise MissingInputError(
                f"mast.sample.{kind}: {name} not found; copy it from ../shared/data/mast "
                "(see data/sample/mast/PROVENANCE.md) or fix the path in conf/mast."
            )
        content = path.read_bytes()
        where = relpath(path)
        try:
            page = parse_envelope(content, where=where)
            if page.status != "COMPLETE":
                raise InputFileError(
                    f"{where}: a recorded answer with status {page.status}; only COMPLETE "
                    "answers can be replayed; record the answer again."
                )
            tables.append(rows_to_table(page.fields, page.rows, where=where))
        except AstropipeError as exc:
            log.warning("quarantined %s: %s", where, exc)
            quarantined.append({"file": where, "reason": str(exc)})
            continue
        inputs[where] = sha256_bytes(content)
    if paths and not tables:
        raise InputFileError(
            f"mast.sample.{kind}: 0 of {len(paths)} recorded answers readable (first: "
            f"{quarantined[0]['reason']}); nothing written."
        )
    return concat_tables(tables, where=f"mast.sample.{kind}"), inputs, quarantined


def _units(table: pa.Table, units: Mapping[str, str]) -> dict[str, str]:
    """The units of the columns ``table`` really has (answers differ in their fields)."""
    return {k: v for k, v in units.items() if k in table.column_names}


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(
            f"--limit {limit}: expected a positive number of observations, or no --limit; "
            "nothing was read or written."
        )


def _sample(cfg: MastConfig, limit: int | None) -> dict[str, Any]:
    from astropipe.sources.mast import filter_products, sort_observations, sort_products

    obs, obs_inputs, bad_obs = read_recorded(cfg.sample.observations, kind="observations")
    prod, prod_inputs, bad_prod = read_recorded(cfg.sample.products, kind="products")
    obs = sort_observations(obs)
    if limit is not None:
        obs = obs.slice(0, limit)
    prod = filter_products(sort_products(prod), cfg.products) if prod.num_columns else prod
    return {
        "observations": obs,
        "products": prod,
        "inputs": {**obs_inputs, **prod_inputs},
        "quarantined": bad_obs + bad_prod,
        "query": None,
    }


def _live(cfg: MastConfig, limit: int | None) -> dict[str, Any]:
    from dataclasses import replace

    from astropipe.sources.mast import MastClient, filter_products

    query = cfg.query if limit is None else replace(cfg.query, limit=limit)
    client = MastClient(cfg.client)
    obs = client.observations(query)
    has_ids = "obsid" in obs.table.column_names
    obsids = [o for o in obs.table.column("obsid").to_pylist() if o] if has_ids else []
    prod = client.products(obsids) if obsids else None
    products = filter_products(prod.table, cfg.products) if prod is not None else None
    requests = obs.requests + (prod.requests if prod is not None else [])
    responses = {**obs.responses, **(prod.responses if prod is not None else {})}
    return {
        "observations": obs.table,
        "products": products,
        "inputs": responses,
        "quarantined": [],
        "query": {"url": cfg.client.url, "requests": requests},
    }


def planned_requests(cfg: MastConfig, limit: int | None = None) -> dict[str, Any]:
    """What a live run would send, without sending it (the dry run of ``mast.source=live``)."""
    from dataclasses import replace

    from astropipe.sources.mast import load_mast_token, observation_request
    from astropipe.sources.redact import safe_url

    query = (cfg.query if limit is None else replace(cfg.query, limit=limit)).validate()
    first = observation_request(query, pagesize=cfg.client.pagesize)
    names = [n for n in cfg.client.token_env if load_mast_token([n])]
    return {
        "invoke_url": safe_url(cfg.client.url),
        "method": "POST, form field request=<json>",
        "authorization": f"token from {names[0]}" if names else "none (public data)",
        "observations": {
            "request": first,
            "then": "page 2, 3, ... until paging.rowsTotal rows",
        },  # fmt: skip
        "products": {
            "request": {
                "service": "Mast.Caom.Products",
                "format": "json",
                "pagesize": cfg.client.pagesize,
                "page": 1,
                "params": {"obsid": "<obsid,obsid,...>"},
            },  # fmt: skip
            "then": f"one request per {cfg.client.products_batch} obsids of the observations",
        },
        "downloads": "none (ingest_mast writes metadata only)",
        "limit": query.limit,
        "product_filter": asdict(cfg.products),
    }


def _summary(cfg: MastConfig, got: dict[str, Any], products: pa.Table) -> dict[str, Any]:
    obs: pa.Table = got["observations"]

    def counts(table: pa.Table, name: str) -> dict[str, int]:
        if name not in table.column_names:
            return {}
        out: dict[str, int] = {}
        for v in table.column(name).to_pylist():
            key = "null" if v is None else str(v)
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))

    return {
        "source": cfg.source,
        "observations": obs.num_rows,
        "observation_fields": obs.num_columns,
        "observations_by_collection": counts(obs, "obs_collection"),
        "products": products.num_rows,
        "product_fields": products.num_columns,
        "products_by_type": counts(products, "productType"),
        "answers_read": len(got["inputs"]),
        "quarantined": len(got["quarantined"]),
    }


def run(
    params: Mapping[str, Any],
    *,
    dry_run: bool = False,
    limit: int | None = None,
    progress: bool = False,  # noqa: ARG001  (the common signature of the ingest stages)
) -> dict[str, Any]:
    """Run ingest_mast with the ``mast`` section of ``params``.

    Parameters
    ----------
    params
        The composed parameters (params.yaml or :func:`astropipe.config.compose`).
    dry_run
        Sample: parse and summarise, write nothing. Live: print the requests a run would
        send; no network request is made.
    limit
        Keep at most this many observations (after the deterministic sort).
    progress
        Accepted for a common signature; this stage has no long loop.

    Returns
    -------
    dict
        The stage metrics (also written to ``mast.outputs.metrics`` unless ``dry_run``).
    """
    _check_limit(limit)
    cfg = MastConfig.from_params(params)
    if dry_run:
        summary: dict[str, Any] = {"dry_run": True, "source": cfg.source}
        if cfg.source == "live":
            summary["requests"] = planned_requests(cfg, limit)
        else:
            got = _sample(cfg, limit)
            summary.update(_summary(cfg, got, got["products"]))
            summary["quarantined"] = got["quarantined"]
        summary["outputs"] = asdict(cfg.outputs)
        return summary

    out = cfg.outputs
    out_dir = Path(out.dir)
    for name in ("observations", "products"):
        target = Path(getattr(out, name))
        if out_dir.resolve() not in target.resolve().parents:
            raise ConfigError(
                f"mast.outputs.{name}={target} is outside mast.outputs.dir={out_dir}; keep "
                "both tables under one directory (it is one DVC output)."
            )
    with OutputLock(out_dir, writer="ingest_mast"):
        for target in (out_dir, Path(out.report), Path(out.metrics)):
            remove_stale_temps(target)
        got = _sample(cfg, limit) if cfg.source == "sample" else _live(cfg, limit)
        products = got["products"]
        if products is None or products.num_columns == 0:
            products = PRODUCT_CORE.empty_table()
        prov = provenance(
            stage="ingest_mast", inputs=got["inputs"], params=params["mast"],
            source=cfg.source, query=got["query"],
        )  # fmt: skip
        with atomic_dir(out_dir) as tmp:
            rel = lambda p: tmp / Path(p).resolve().relative_to(out_dir.resolve())  # noqa: E731
            observations = got["observations"]
            write_parquet(observations, rel(out.observations), provenance=prov,
                          units=_units(observations, OBSERVATION_UNITS))  # fmt: skip
            write_parquet(products, rel(out.products), provenance=prov,
                          units=_units(products, PRODUCT_UNITS))  # fmt: skip
        summary = _summary(cfg, got, products)
        report = {**summary, "quarantined": got["quarantined"],
                  "requests": (got["query"] or {}).get("requests", [])}  # fmt: skip
        write_json(report, out.report)
        write_json({k: summary[k] for k in METRIC_KEYS}, out.metrics)
    log.info("ingest_mast: %s", summary)
    return summary
