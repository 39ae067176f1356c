"""The MAST Portal API, live: CAOM observation queries, their products, and file downloads.

Requests follow MAST's "MashupRequest" (https://mast.stsci.edu/api/v0/): a ``POST`` to
``/api/v0/invoke`` with one form field, ``request=<json>``::

    {"service": "Mast.Caom.Filtered", "format": "json", "pagesize": 5000, "page": 1,
     "params": {"columns": "*", "filters": [{"paramName": "obs_collection",
                                             "values": ["TESS"]}, ...]}}

- ``Mast.Caom.Filtered``: ``filters`` only. Discrete fields list their values (as strings);
  continuous ones (``t_min``, ``t_max``) give ``[{"min": lo, "max": hi}]``.
- ``Mast.Caom.Filtered.Position``: the same plus ``"position": "ra, dec, radius"`` (degrees).
- ``Mast.Caom.Products``: ``{"obsid": "id1,id2,..."}``, sent in batches of obsids.

Every answer is checked by :func:`astropipe.mast.envelope.parse_envelope`. ``status:
EXECUTING`` means MAST is still working: the same request is sent again after
``poll_interval`` seconds, up to ``max_polls`` times (MAST's documented behaviour; astroquery
does the same). ``ERROR`` raises with MAST's ``msg`` and the service name. Pages are requested
until ``paging.rowsTotal`` rows have arrived.

Files come from ``/api/v0.1/Download/file?uri=<dataURI>`` through
:func:`astropipe.sources.http.download` (streamed to a temporary file, renamed only when the
whole body arrived, SHA-256 computed as it streams) into a local cache: a file already cached
with the size the product listing declares is not fetched again, so an interrupted run
resumes file by file (there is no byte-range resume inside one file).

The token (``MAST_API_TOKEN``, else ``TESS_API_TOKEN``, from the environment or ``.env``) goes
only in the ``Authorization: token <token>`` header; it is in no URL, request body, message,
log line or output.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import requests

from astropipe.errors import AstropipeError, ServiceError, ServiceResponseError
from astropipe.mast.config import MastClientConfig, MastQuery, ProductFilter
from astropipe.mast.envelope import MastPage, concat_tables, parse_envelope, rows_to_table
from astropipe.provenance import sha256_file
from astropipe.sources.http import download, get_text, load_token, make_session, safe_url
from astropipe.sources.responses import scrub

__all__ = [
    "FILTERED",
    "POSITION",
    "PRODUCTS",
    "OBSERVATION_SORT",
    "OBSERVATION_KEY",
    "PRODUCT_SORT",
    "PRODUCT_KEY",
    "MastResult",
    "load_mast_token",
    "mast_session",
    "caom_filters",
    "observation_request",
    "products_requests",
    "encode_request",
    "MastClient",
    "sort_observations",
    "sort_products",
    "filter_products",
    "cache_path",
]

log = logging.getLogger(__name__)

FILTERED = "Mast.Caom.Filtered"
POSITION = "Mast.Caom.Filtered.Position"
PRODUCTS = "Mast.Caom.Products"

#: Deterministic row orders (columns absent from an answer are skipped). The last columns
#: are also the row keys: one CAOM observation (``obsid``) has a row per plane (``objID``;
#: GALEX FUV and NUV share an obsid), and one file (``dataURI``) may belong to several
#: observations (``obsID``), so neither id alone is unique.
OBSERVATION_SORT = ("obs_collection", "obs_id", "obsid", "objID")
OBSERVATION_KEY = ("obsid", "objID")
PRODUCT_SORT = ("obsID", "productFilename", "dataURI")
PRODUCT_KEY = ("obsID", "dataURI")

# One path segment of a dataURI that may become a cache path: no separators, no dot-dirs.
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class MastResult:
    """Rows of one logical query (all its pages), and what was asked and answered.

    Attributes
    ----------
    table
        Typed columns from the answers' ``fields``.
    requests
        Each request sent, in order: ``{"service", "page", "request"}`` (the JSON text).
    responses
        ``"<service> page <n>"`` → SHA-256 of that answer's body (the snapshot's fingerprint).
    """

    table: pa.Table
    requests: list[dict[str, Any]] = field(default_factory=list)
    responses: dict[str, str] = field(default_factory=dict)


def load_mast_token(env_names: Sequence[str], *, dotenv_path: str = ".env") -> str | None:
    """The first non-empty token among ``env_names`` (environment first, then ``.env``)."""
    for name in env_names:
        token = load_token(name, dotenv_path=dotenv_path)
        if token:
            return token
    return None


def mast_session(cfg: MastClientConfig, *, token: str | None = None) -> requests.Session:
    """A :func:`~astropipe.sources.http.make_session` session speaking MAST's token scheme."""
    return make_session(
        retries=cfg.retries,
        backoff_factor=cfg.backoff_factor,
        token=token,
        max_retry_after=cfg.max_retry_after,
        auth_scheme="token",
    )


def caom_filters(query: MastQuery) -> list[dict[str, Any]]:
    """The ``filters`` list of a CAOM query, in a fixed order (discrete values as strings)."""
    discrete = {
        "obs_collection": query.obs_collection,
        "dataproduct_type": query.dataproduct_type,
        "target_name": query.target_name,
        "sequence_number": query.sequence_number,
    }
    out: list[dict[str, Any]] = [
        {"paramName": name, "values": [str(v) for v in values]}
        for name, values in discrete.items()
        if values
    ]
    for name, pair in (("t_min", query.t_min), ("t_max", query.t_max)):
        if pair is not None:
            out.append({"paramName": name, "values": [{"min": pair[0], "max": pair[1]}]})
    return out


def observation_request(query: MastQuery, *, pagesize: int, page: int = 1) -> dict[str, Any]:
    """The MashupRequest of a CAOM observation query (Filtered, or Filtered.Position)."""
    params: dict[str, Any] = {"columns": "*", "filters": caom_filters(query)}
    service = FILTERED
    if query.ra is not None:
        service = POSITION
        params["position"] = f"{query.ra!r}, {query.dec!r}, {query.radius!r}"
    return {"service": service, "format": "json", "pagesize": pagesize, "page": page,
            "params": params}  # fmt: skip


def products_requests(obsids: Sequence[str], *, batch: int, pagesize: int) -> list[dict[str, Any]]:
    """One ``Mast.Caom.Products`` request (page 1) per batch of ``batch`` obsids, in order."""
    out = []
    for start in range(0, len(obsids), batch):
        chunk = ",".join(obsids[start : start + batch])
        out.append({"service": PRODUCTS, "format": "json", "pagesize": pagesize, "page": 1,
                    "params": {"obsid": chunk}})  # fmt: skip
    return out


def encode_request(request: Mapping[str, Any]) -> str:
    """The request as sent: JSON with sorted keys (the same query gives the same bytes)."""
    return json.dumps(request, sort_keys=True, separators=(",", ":"))


def _label(request: Mapping[str, Any]) -> str:
    return f"{request['service']} page {request['page']}"


class MastClient:
    """A session plus the ``mast.client`` settings: invoke, page, poll, download.

    Parameters
    ----------
    cfg
        ``mast.client``.
    session
        Optional; built with :func:`mast_session` and the token from ``cfg.token_env``.
    """

    def __init__(self, cfg: MastClientConfig, *, session: requests.Session | None = None):
        self.cfg = cfg.validate()
        if session is None:
            session = mast_session(cfg, token=load_mast_token(cfg.token_env))
        self.session = session

    def _fail(self, exc: AstropipeError, label: str) -> AstropipeError:
        """The same error, prefixed with the MAST service and page it came from."""
        msg = scrub(f"{label}: {exc}", self.session)
        if isinstance(exc, ServiceError):
            return ServiceError(msg, status=exc.status)
        return type(exc)(msg)

    def invoke(self, request: Mapping[str, Any]) -> tuple[MastPage, str]:
        """Send one MashupRequest; re-send while MAST answers EXECUTING.

        Returns
        -------
        (MastPage, str)
            The COMPLETE page and the SHA-256 of its body.

        Raises
        ------
        ServiceError
            Unreachable, HTTP error after retries, or still EXECUTING after ``max_polls``.
        ServiceResponseError
            HTML, non-JSON, ``status: ERROR`` (MAST's message quoted), a malformed envelope.
        """
        label = _label(request)
        body = {"request": encode_request(request)}
        for poll in range(1, self.cfg.max_polls + 1):
            try:
                fetched = get_text(
                    self.session, self.cfg.url, timeout=tuple(self.cfg.timeout),
                    expect="json", method="POST", deadline=self.cfg.deadline, data=body,
                )  # fmt: skip
            except AstropipeError as exc:
                raise self._fail(exc, label) from None
            page = parse_envelope(fetched.content, where=f"{safe_url(self.cfg.url)} {label}")
            if page.status == "COMPLETE":
                return page, fetched.sha256
            log.info(
                "%s: MAST is still EXECUTING (poll %d of %d); asking again in %g s",
                label, poll, self.cfg.max_polls, self.cfg.poll_interval,
            )  # fmt: skip
            time.sleep(self.cfg.poll_interval)
        raise ServiceError(
            f"{safe_url(self.cfg.url)} {label}: still EXECUTING after {self.cfg.max_polls} polls "
            f"{self.cfg.poll_interval:g} s apart; MAST is busy; retry later, or raise "
            "mast.client.max_polls."
        )

    def fetch_all(self, request: Mapping[str, Any]) -> MastResult:
        """Send ``request`` page after page until ``paging.rowsTotal`` rows have arrived."""
        result = MastResult(table=pa.table({}))
        tables: list[pa.Table] = []
        fields: tuple[tuple[str, str], ...] | None = None
        received, total, page_no = 0, None, int(request.get("page", 1))
        while True:
            req = {**request, "page": page_no}
            label = _label(req)
            page, sha = self.invoke(req)
            where = f"{safe_url(self.cfg.url)} {label}"
            result.requests.append({"service": req["service"], "page": page_no,
                                    "request": encode_request(req)})  # fmt: skip
            result.responses[label] = sha
            if fields is None:
                fields, total = page.fields, page.rows_total
            elif page.fields != fields:
                raise ServiceResponseError(
                    f"{where}: the fields changed between pages; the result changed while "
                    "paging; run again."
                )
            elif page.rows_total != total:
                raise ServiceResponseError(
                    f"{where}: paging.rowsTotal changed from {total} to {page.rows_total} "
                    "while paging; the result changed underneath; run again."
                )
            tables.append(rows_to_table(page.fields, page.rows, where=where))
            received += len(page.rows)
            if received >= total:
                break
            if not page.rows:  # a short result must not loop forever
                raise ServiceResponseError(
                    f"{where}: an empty page after {received} of paging.rowsTotal={total} rows; "
                    "MAST's paging is inconsistent; run again."
                )
            page_no += 1
        result.table = concat_tables(tables, where=request["service"])
        return result

    def observations(self, query: MastQuery) -> MastResult:
        """Every observation the query matches, sorted (:data:`OBSERVATION_SORT`), then cut to
        ``query.limit``."""
        query.validate()
        result = self.fetch_all(observation_request(query, pagesize=self.cfg.pagesize))
        table = sort_observations(result.table)
        if query.limit is not None:
            table = table.slice(0, query.limit)
        result.table = table
        return result

    def products(self, obsids: Sequence[str]) -> MastResult:
        """The products of ``obsids`` (batched), sorted (:data:`PRODUCT_SORT`), unique dataURI."""
        merged = MastResult(table=pa.table({}))
        tables = []
        reqs = products_requests(
            list(obsids), batch=self.cfg.products_batch, pagesize=self.cfg.pagesize
        )
        for n, req in enumerate(reqs, start=1):
            part = self.fetch_all(req)
            tables.append(part.table)
            merged.requests += part.requests
            for label, sha in part.responses.items():
                merged.responses[f"{label} (batch {n})"] = sha
        merged.table = sort_products(concat_tables(tables, where=PRODUCTS))
        return merged

    def download(
        self, data_uri: str, cache_dir: str | Path, *, size: int | None = None
    ) -> tuple[Path, str, bool]:
        """Fetch one product into the cache (or reuse the cached copy).

        Returns
        -------
        (Path, str, bool)
            The cached file, its SHA-256, and whether it was already cached.

        Raises
        ------
        ServiceResponseError
            The dataURI cannot be a cache path, or the file's size is not the listed ``size``.
        ServiceError
            As :func:`astropipe.sources.http.download`.
        """
        dest = cache_path(cache_dir, data_uri)
        if dest.is_file() and (size is None or dest.stat().st_size == size):
            log.info("cached: %s", dest)
            return dest, sha256_file(dest), True
        label = f"download {data_uri}"
        try:
            sha = download(
                self.session, self.cfg.download_url, dest, params={"uri": data_uri},
                timeout=tuple(self.cfg.timeout), deadline=self.cfg.deadline,
            )  # fmt: skip
        except AstropipeError as exc:
            raise self._fail(exc, label) from None
        got = dest.stat().st_size
        if size is not None and got != size:
            dest.unlink()
            raise ServiceResponseError(
                f"{label}: {got} bytes arrived but the product listing says {size}; the file "
                "was removed from the cache; run again."
            )
        return dest, sha, False


def cache_path(cache_dir: str | Path, data_uri: str) -> Path:
    """Where ``data_uri`` (``mast:TESS/product/<f>``) is cached: ``<cache_dir>/TESS/product/<f>``.

    A URI is data from the service: each segment must be a plain file name, so no answer can
    place a file outside ``cache_dir``.

    Raises
    ------
    ServiceResponseError
        A URI without the ``mast:`` scheme, or with a segment that is empty, ``..``, absolute
        or holds characters outside ``[A-Za-z0-9._+-]``.
    """
    if not isinstance(data_uri, str) or not data_uri.startswith("mast:"):
        raise ServiceResponseError(
            f"dataURI {data_uri!r}: expected 'mast:<collection>/.../<file>'; the product is "
            "skipped."
        )
    parts = data_uri[len("mast:") :].split("/")
    if not all(_SAFE_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts):
        raise ServiceResponseError(
            f"dataURI {data_uri!r}: a segment is not a plain file name; refusing to use it as "
            "a cache path; the product is skipped."
        )
    root = Path(cache_dir).resolve()
    dest = root.joinpath(*parts).resolve()
    if root not in dest.parents:
        raise ServiceResponseError(f"dataURI {data_uri!r}: escapes the cache; skipped.")
    return dest


def _sort(table: pa.Table, keys: Iterable[str]) -> pa.Table:
    present = [(k, "ascending") for k in keys if k in table.column_names]
    if not present or table.num_rows == 0:
        return table
    # Arrow's sort is stable: ties keep answer order; nulls sort last.
    return table.take(pc.sort_indices(table, sort_keys=present))


def sort_observations(table: pa.Table) -> pa.Table:
    """Sort by :data:`OBSERVATION_SORT`; keep the first row of each :data:`OBSERVATION_KEY`.

    The same observation plane answered by two queries (Filtered and Filtered.Position) is
    kept once, from the first answer (the Position answer adds ``distance``).
    """
    return _unique(_sort(table, OBSERVATION_SORT), OBSERVATION_KEY)


def sort_products(table: pa.Table) -> pa.Table:
    """Sort by :data:`PRODUCT_SORT`; keep the first row of each :data:`PRODUCT_KEY`."""
    return _unique(_sort(table, PRODUCT_SORT), PRODUCT_KEY)


def _unique(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """Drop later rows whose ``key`` columns repeat an earlier row (a null key never repeats)."""
    cols = [table.column(k).to_pylist() for k in key if k in table.column_names]
    if not cols or table.num_rows == 0:
        return table
    seen: set[tuple[Any, ...]] = set()
    keep = []
    for i, values in enumerate(zip(*cols, strict=True)):
        if any(v is None for v in values) or values not in seen:
            keep.append(i)
            seen.add(values)
    if len(keep) == table.num_rows:
        return table
    log.info("%d repeated rows (same %s) dropped", table.num_rows - len(keep), "/".join(key))
    return table.take(pa.array(keep, type=pa.int64()))


def filter_products(table: pa.Table, rule: ProductFilter) -> pa.Table:
    """Keep the products that pass every non-empty constraint of ``rule``."""
    if table.num_rows == 0:
        return table
    mask = pa.array([True] * table.num_rows)

    def column(name: str) -> pa.ChunkedArray:
        if name in table.column_names:
            return table.column(name)
        return pa.chunked_array([pa.nulls(table.num_rows, pa.string())])

    if rule.subgroups:
        hit = pc.is_in(column("productSubGroupDescription"), pa.array(rule.subgroups))
        mask = pc.and_kleene(mask, pc.fill_null(hit, False))
    if rule.types:
        hit = pc.is_in(column("productType"), pa.array(rule.types))
        mask = pc.and_kleene(mask, pc.fill_null(hit, False))
    if rule.suffixes:
        names = column("productFilename")
        hit = None
        for suffix in rule.suffixes:
            one = pc.fill_null(pc.ends_with(names, suffix), False)
            hit = one if hit is None else pc.or_(hit, one)
        mask = pc.and_kleene(mask, hit)
    return table.filter(mask)
