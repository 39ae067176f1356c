"""Fetch nights of the public ZTF alert archive into a local cache.

The archive (https://ztf.uw.edu/alerts/public) serves one ``ztf_public_YYYYMMDD.tar.gz`` per
night. :func:`fetch_nights` downloads the configured ``ztf.alerts.nights`` into
``ztf.alerts.cache_dir`` through :func:`astropipe.sources.http.download` (streamed to a
temporary sibling, renamed only when the whole body arrived and matched its Content-Length,
retried on 429/5xx/connection errors). The tarballs are then read as local files by
:func:`astropipe.ztf.packets.iter_packets`.

Cache rule: a night whose tarball is already in the cache is **not** requested again (no HEAD,
no GET). Because downloads are atomic, a file under the final name is always a complete body;
the archive's past nights do not change. Delete the file (or the cache directory) to re-fetch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import requests

from astropipe.errors import ServiceError
from astropipe.sources.http import download, make_session, safe_url
from astropipe.ztf.config import AlertsConfig

__all__ = ["ArchiveNight", "plan_nights", "fetch_nights", "TIMEOUT", "RETRIES", "BACKOFF"]

log = logging.getLogger(__name__)

#: (connect, read) seconds; the read timeout bounds each wait for bytes, not the whole night.
TIMEOUT = (10.0, 120.0)
#: Retries on connection errors and 429/5xx answers (see :func:`make_session`).
RETRIES = 4
#: Seconds; exponential backoff between retries.
BACKOFF = 1.0


@dataclass(frozen=True)
class ArchiveNight:
    """One configured night: where it is served and where it is cached."""

    night: str
    url: str
    path: Path

    @property
    def cached(self) -> bool:
        """True when the tarball is already in the cache (it will not be requested)."""
        return self.path.is_file()


def plan_nights(cfg: AlertsConfig) -> list[ArchiveNight]:
    """The configured nights in night order, with their URLs and cache paths (no I/O)."""
    cfg.validate()
    base = cfg.archive_url.rstrip("/")
    out = []
    for night in sorted(cfg.nights):
        name = f"ztf_public_{night}.tar.gz"
        out.append(ArchiveNight(night, f"{base}/{name}", Path(cfg.cache_dir) / name))
    return out


def fetch_nights(
    cfg: AlertsConfig,
    *,
    session: requests.Session | None = None,
    timeout: tuple[float, float] = TIMEOUT,
) -> list[Path]:
    """Download every configured night missing from the cache; return the local tarballs.

    Parameters
    ----------
    cfg
        ``ztf.alerts``; uses ``archive_url``, ``nights`` and ``cache_dir``.
    session
        A session from :func:`make_session`; default: one with :data:`RETRIES` retries and
        :data:`BACKOFF` backoff.
    timeout
        ``(connect, read)`` seconds.

    Returns
    -------
    list of Path
        The cached tarballs, in night order.

    Raises
    ------
    ServiceError
        A night the archive does not have (HTTP 404: no alerts that night), or the archive
        unreachable / failing after the retries.
    ServiceResponseError
        A truncated or HTML body; nothing is left in the cache.
    """
    plan = plan_nights(cfg)
    if any(not n.cached for n in plan):
        Path(cfg.cache_dir).mkdir(parents=True, exist_ok=True)
    if session is None:
        session = make_session(retries=RETRIES, backoff_factor=BACKOFF)
    for night in plan:
        if night.cached:
            log.info("night %s: %s already cached, not fetched", night.night, night.path)
            continue
        try:
            download(session, night.url, night.path, timeout=timeout)
        except ServiceError as exc:
            if exc.status != 404:  # a missing night needs its own hint
                raise
            raise ServiceError(
                f"{safe_url(night.url)}: HTTP 404, the archive has no tarball for night "
                f"{night.night} (no public alerts that night?); remove {night.night!r} from "
                "ztf.alerts.nights."
            ) from None
    return [n.path for n in plan]
