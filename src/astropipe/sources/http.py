"""One HTTP session for every live source: retries, timeouts, checked bodies, secret hygiene.

Every live ingest goes through :func:`make_session` and then :func:`get_text` (a small answer
parsed in memory) or :func:`download` (a file streamed to a temporary sibling and renamed into
place). Both turn transport failures into :class:`~astropipe.errors.ServiceError` and bodies
the caller cannot use into :class:`~astropipe.errors.ServiceResponseError`, each with one line
naming the URL (without credentials), what was expected, what came back and what to do.

A token, when one is configured, travels only in the ``Authorization`` header. It is never put
in a URL, and every message built here is scrubbed of it, so it cannot reach logs, reports or
output metadata.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from astropipe import __version__
from astropipe.errors import ServiceError, ServiceResponseError
from astropipe.io.atomic import atomic_path
from astropipe.sources.responses import EXPECT, check_type, read_body, scrub

__all__ = [
    "RETRY_STATUSES",
    "EXPECT",
    "Fetched",
    "make_session",
    "load_token",
    "safe_url",
    "get_text",
    "download",
]

log = logging.getLogger(__name__)

#: Statuses worth retrying: rate limiting and transient server-side failures.
RETRY_STATUSES = (429, 500, 502, 503, 504)

_SECRET_PARAMS = re.compile(r"(token|key|secret|password|passwd|auth|signature)", re.I)


@dataclass(frozen=True)
class Fetched:
    """A checked response body.

    Attributes
    ----------
    url
        The request URL with its query, credentials removed (see :func:`safe_url`).
    status
        HTTP status of the final response (after retries).
    content_type
        Media type without parameters, lower case ("" when the server sent none).
    content
        The raw body.
    sha256
        Hex SHA-256 of ``content`` (recorded as the provenance of live data).
    """

    url: str
    status: int
    content_type: str
    content: bytes
    sha256: str

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.content.decode("utf-8", errors="replace")


def load_token(env_name: str | None, *, dotenv_path: str | os.PathLike[str] = ".env") -> str | None:
    """Return the token held by environment variable ``env_name``, else from ``.env``, else None.

    The ``.env`` file is read without touching ``os.environ``. An empty value counts as unset.
    """
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if not value and Path(dotenv_path).is_file():
        from dotenv import dotenv_values

        value = dotenv_values(dotenv_path).get(env_name)
    return value or None


def make_session(
    *,
    retries: int,
    backoff_factor: float,
    token: str | None = None,
    user_agent: str = f"astropipe/{__version__}",
) -> requests.Session:
    """Build a ``requests`` session that retries transient failures.

    Parameters
    ----------
    retries
        Retries on connection errors, read timeouts and the statuses in :data:`RETRY_STATUSES`.
    backoff_factor
        Seconds; the n-th retry waits ``backoff_factor * 2**(n-1)`` unless the server sent a
        ``Retry-After`` header, which is honoured.
    token
        Optional bearer token, sent only in the ``Authorization`` header.
    user_agent
        The ``User-Agent`` header.

    Returns
    -------
    requests.Session
        With the retry adapter mounted on ``http://`` and ``https://``. The final response of
        an exhausted status retry is returned (not raised), so callers can report its status.
    """
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def safe_url(url: str, params: Any = None) -> str:
    """Return ``url`` (with ``params`` appended) minus user info and secret-looking parameters."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if params:
        items = params.items() if hasattr(params, "items") else params
        query += [(str(k), str(v)) for k, v in items]
    query = [(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in query]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def _send(
    session: requests.Session,
    method: str,
    url: str,
    params: Any,
    timeout: tuple[float, float],
    *,
    stream: bool,
) -> requests.Response:
    shown = safe_url(url, params)
    try:
        response = session.request(method, url, params=params, timeout=timeout, stream=stream)
    except requests.exceptions.RequestException as exc:
        retry = session.get_adapter(url).max_retries
        reason = exc.__class__.__name__
        inner = getattr(exc.args[0], "reason", None) if exc.args else None
        if inner is not None:
            reason = f"{reason}: {inner.__class__.__name__}"
        msg = (
            f"{shown}: no usable answer after {retry.total} retries ({reason}; timeouts "
            f"connect={timeout[0]}s read={timeout[1]}s); check the network and the service "
            "status, or raise the retries/timeout in the config."
        )
        raise ServiceError(scrub(msg, session)) from None
    if response.status_code >= 400:
        retried = response.status_code in RETRY_STATUSES
        hint = {
            401: "the service wants credentials; set the token environment variable",
            403: "the token (if any) is not allowed this data; check it",
            404: "the URL is wrong; check the configured url",
            429: "the service is rate limiting us; wait and retry later",
        }.get(response.status_code, "the service is failing; retry later")
        if response.status_code == 400:
            hint = "the service rejected the query; check the query parameters"
        after = " after retries" if retried else ""
        response.close()
        msg = f"{shown}: HTTP {response.status_code} {response.reason}{after}; {hint}."
        raise ServiceError(scrub(msg, session), status=response.status_code)
    return response


def get_text(
    session: requests.Session,
    url: str,
    params: Any = None,
    *,
    timeout: tuple[float, float],
    expect: str = "csv",
    method: str = "GET",
) -> Fetched:
    """Request ``url`` and return its checked body.

    Parameters
    ----------
    session
        From :func:`make_session`.
    url, params
        Endpoint and query parameters (a mapping or a list of pairs; repeated keys allowed).
    timeout
        ``(connect, read)`` seconds; the read timeout bounds each wait for bytes.
    expect
        A key of :data:`EXPECT`: the Content-Types accepted. An HTML page is always refused.
    method
        ``GET`` or ``POST`` (both retried).

    Returns
    -------
    Fetched
        The body, its hash and the (credential-free) URL.

    Raises
    ------
    ServiceError
        Unreachable, timed out, or an HTTP error status after the retries.
    ServiceResponseError
        An HTML page, an unexpected Content-Type, an empty or truncated body.
    """
    if expect not in EXPECT:
        raise ValueError(f"expect={expect!r}; valid values are {sorted(EXPECT)}")
    shown = safe_url(url, params)
    response = _send(session, method, url, params, _timeouts(timeout), stream=True)
    parts: list[bytes] = []
    read_body(response, shown, session, parts.append)
    content = b"".join(parts)
    if not content.strip():
        msg = f"{shown}: empty answer where {expect.upper()} was expected; retry later."
        raise ServiceResponseError(scrub(msg, session))
    ctype = check_type(response, content[:8192], expect, shown, session)
    log.debug("GET %s -> %d, %d bytes", shown, response.status_code, len(content))
    return Fetched(
        url=shown,
        status=response.status_code,
        content_type=ctype,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
    )


def download(
    session: requests.Session,
    url: str,
    dest: str | os.PathLike[str],
    *,
    timeout: tuple[float, float],
    params: Any = None,
    expect: str = "any",
) -> str:
    """Stream ``url`` to ``dest`` through a temporary sibling renamed on success.

    Parameters
    ----------
    session, url, params, timeout, expect
        As for :func:`get_text`.
    dest
        Final path. Nothing appears under this name unless the whole body arrived.

    Returns
    -------
    str
        Hex SHA-256 of the file written.

    Raises
    ------
    ServiceError, ServiceResponseError
        As for :func:`get_text`; the temporary file is removed.
    """
    shown = safe_url(url, params)
    response = _send(session, "GET", url, params, _timeouts(timeout), stream=True)
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:

        def sink(chunk: bytes) -> None:
            fh.write(chunk)
            digest.update(chunk)

        def check(head: bytes) -> None:
            check_type(response, head, expect, shown, session)

        received = read_body(response, shown, session, sink, check)
        if received == 0:
            msg = f"{shown}: empty answer (0 bytes) where a file was expected; retry later."
            raise ServiceResponseError(scrub(msg, session))
    log.info("downloaded %s -> %s (%d bytes)", shown, dest, received)
    return digest.hexdigest()


def _timeouts(timeout: Any) -> tuple[float, float]:
    """Accept ``[connect, read]`` from config (a list) as well as a tuple."""
    connect, read = (float(t) for t in timeout)
    return connect, read
