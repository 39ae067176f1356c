"""Live catalogs: the Exoplanet Archive's TAP ``sync`` service, with a fetch cache and freshness.

A live run asks ``<tap.url>?query=<ADQL>&format=csv`` once per catalog, through the shared HTTP
layer (:mod:`astropipe.sources.http`: retries with ``Retry-After`` capped, timeouts, a deadline,
checked bodies). Each answer that parses is kept in ``catalogs.cache_dir`` (git-ignored, neither
git nor DVC) with a small JSON record: URL, query, SHA-256 and the time it was fetched. A later
live run fetches a catalog again only when its cached answer is older than
``catalogs.freshness.<catalog>`` hours, or when the query changed, or when the cached body is
missing or damaged.

The fetch time lives only in that record: it never reaches a Parquet file, the report or the
metrics, so the outputs depend on the answer's bytes alone. The clock is a parameter
(``now``), so the freshness rule is tested without waiting.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from astropipe.catalogs.config import CatalogsConfig
from astropipe.catalogs.schemas import CatalogSpec
from astropipe.errors import InputFileError, ServiceResponseError
from astropipe.io.atomic import atomic_path
from astropipe.provenance import sha256_bytes, sha256_file
from astropipe.sources.http import get_text, make_session, safe_url

__all__ = [
    "Clock",
    "utc_now",
    "CacheEntry",
    "FetchCache",
    "Freshness",
    "tap_query",
    "tap_params",
    "freshness",
    "max_age_hours",
    "live_session",
    "fetch_catalog",
]

log = logging.getLogger(__name__)

#: A function returning the current time (timezone-aware); injected in tests.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC (the default :data:`Clock`)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class CacheEntry:
    """What the cache records about one fetched answer."""

    catalog: str
    url: str
    query: str
    sha256: str
    bytes: int
    fetched_at: str  # ISO 8601, UTC


@dataclass(frozen=True)
class Freshness:
    """Whether a cached answer can be used, and why (for the log and the dry-run plan)."""

    fresh: bool
    reason: str


class FetchCache:
    """Fetched answers under one directory: ``<catalog>.csv`` and ``<catalog>.json``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def body_path(self, catalog: str) -> Path:
        """Where the answer body of ``catalog`` is kept."""
        return self.root / f"{catalog}.csv"

    def record_path(self, catalog: str) -> Path:
        """Where its :class:`CacheEntry` is kept."""
        return self.root / f"{catalog}.json"

    def entry(self, catalog: str) -> CacheEntry | None:
        """The record of ``catalog``, or None when there is none or it is unreadable."""
        path = self.record_path(catalog)
        if not path.is_file():
            return None
        try:
            return CacheEntry(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            log.warning("%s: unreadable cache record (%s); fetching again", path, exc)
            return None

    def store(
        self, catalog: str, *, url: str, query: str, body: bytes, fetched_at: datetime
    ) -> CacheEntry:
        """Keep ``body`` and its record (each written atomically, the body first)."""
        entry = CacheEntry(
            catalog=catalog,
            url=url,
            query=query,
            sha256=sha256_bytes(body),
            bytes=len(body),
            fetched_at=fetched_at.astimezone(UTC).isoformat(),
        )
        with atomic_path(self.body_path(catalog)) as tmp:
            tmp.write_bytes(body)
        with atomic_path(self.record_path(catalog)) as tmp:
            tmp.write_text(json.dumps(asdict(entry), indent=2, sort_keys=True), encoding="utf-8")
        return entry


def tap_query(cfg: CatalogsConfig, spec: CatalogSpec) -> str:
    """The ADQL of ``spec``'s catalog: ``{columns}`` replaced by its declared columns."""
    return cfg.tap.queries[spec.name].replace("{columns}", ",".join(spec.read_names))  # type: ignore[index]


def tap_params(query: str) -> dict[str, str]:
    """The request parameters of a TAP ``sync`` query answered as CSV."""
    return {"query": query, "format": "csv"}


def max_age_hours(cfg: CatalogsConfig, catalog: str) -> float:
    """``catalogs.freshness.<catalog>``."""
    ages = {"koi": cfg.freshness.koi, "toi": cfg.freshness.toi, "k2": cfg.freshness.k2}
    return float(ages[catalog])


def freshness(
    entry: CacheEntry | None,
    cache: FetchCache,
    *,
    url: str,
    query: str,
    max_age_h: float,
    now: datetime,
) -> Freshness:
    """Decide whether a cached answer is still good for a live run at time ``now``.

    Fresh only when the record names the same URL and query, the body on disk has the
    recorded SHA-256, and ``0 <= now - fetched_at < max_age_h`` hours. A fetch time in the
    future (a clock that moved back) counts as stale.
    """
    if entry is None:
        return Freshness(False, "not cached")
    if entry.url != url or entry.query != query:
        return Freshness(False, "the query changed since it was cached")
    body = cache.body_path(entry.catalog)
    if not body.is_file() or sha256_file(body) != entry.sha256:
        return Freshness(False, "the cached answer is missing or damaged")
    try:
        fetched = datetime.fromisoformat(entry.fetched_at)
    except ValueError:
        return Freshness(False, f"unreadable fetch time {entry.fetched_at!r}")
    age_h = (now - fetched).total_seconds() / 3600.0
    if age_h < 0:
        return Freshness(False, "fetched in the future (the clock moved back)")
    if age_h >= max_age_h:
        return Freshness(False, f"{age_h:.1f} h old, older than its {max_age_h:g} h")
    return Freshness(True, f"{age_h:.1f} h old, fresh for {max_age_h:g} h")


def live_session(cfg: CatalogsConfig) -> requests.Session:
    """One session for every catalog of a run (the archive needs no token)."""
    return make_session(
        retries=cfg.tap.retries,
        backoff_factor=cfg.tap.backoff_factor,
        max_retry_after=cfg.tap.max_retry_after,
    )


def fetch_catalog(
    cfg: CatalogsConfig,
    spec: CatalogSpec,
    cache: FetchCache,
    *,
    session: requests.Session,
    now: datetime,
    check: Callable[[bytes, str], Any],
    force: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Return the parsed answer for ``spec``'s catalog: the cached one if fresh, else fetched.

    ``check(body, where)`` parses the body (raising on a bad one) before it is cached, so an
    unusable answer never becomes the fresh copy.

    Returns
    -------
    tuple
        What ``check`` returned, and ``{"url", "query", "sha256", "fetched", "freshness"}``
        (``fetched``: whether the network was used).
    """
    query = tap_query(cfg, spec)
    url = cfg.tap.url
    shown = safe_url(url, tap_params(query))
    entry = cache.entry(spec.name)
    state = freshness(
        entry, cache, url=safe_url(url), query=query, max_age_h=max_age_hours(cfg, spec.name),
        now=now,
    )  # fmt: skip
    if state.fresh and not force and entry is not None:
        log.info("%s: using the cached answer (%s)", spec.name, state.reason)
        body = cache.body_path(spec.name).read_bytes()
        info = {"url": shown, "query": query, "sha256": entry.sha256, "fetched": False,
                "freshness": state.reason}  # fmt: skip
        return check(body, shown), info
    log.info("%s: fetching %s (%s)", spec.name, shown, state.reason)
    answer = get_text(
        session,
        url,
        tap_params(query),
        timeout=tuple(cfg.tap.timeout),  # type: ignore[arg-type]
        expect="csv",
        deadline=cfg.tap.deadline,
    )
    try:
        parsed = check(answer.content, answer.url)
    except InputFileError as exc:  # the service answered, but not with a usable table
        raise ServiceResponseError(f"{exc} (nothing was cached)") from None
    cache.store(spec.name, url=safe_url(url), query=query, body=answer.content, fetched_at=now)
    return parsed, {"url": shown, "query": query, "sha256": answer.sha256, "fetched": True,
                            "freshness": state.reason}  # fmt: skip
