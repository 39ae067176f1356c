"""One HTTP session for every live source: retries, timeouts, checked bodies, secret hygiene.

Every live ingest goes through :func:`make_session` and then :func:`get_text` (a small answer
parsed in memory) or :func:`download` (a file streamed to a temporary sibling and renamed into
place). Both turn transport failures into :class:`~astropipe.errors.ServiceError` and bodies
the caller cannot use into :class:`~astropipe.errors.ServiceResponseError`, each with one line
naming the URL (without credentials), what was expected, what came back and what to do.

A token, when one is configured, travels only in the ``Authorization`` header. It is never put
in a URL, and every message built here is scrubbed of it, so it cannot reach logs, reports or
output metadata. Credentials written into a configured URL (``user:pass@``, ``?token=``) are
used for the request but recorded nowhere: see :mod:`astropipe.sources.redact`.

Time is bounded three ways: ``(connect, read)`` timeouts bound each wait for bytes; a server's
``Retry-After`` is honoured up to ``max_retry_after`` seconds (and each wait is logged); and an
optional ``deadline`` bounds the whole call, retries and body included, so a server that keeps
dripping bytes (each read succeeds, no timeout ever fires) is cut off.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from astropipe import __version__
from astropipe.errors import ServiceError, ServiceResponseError
from astropipe.io.atomic import atomic_path
from astropipe.progress import bar as progress_bar
from astropipe.provenance import sha256_bytes, sha256_stream
from astropipe.sources.redact import install_log_redaction, safe_url
from astropipe.sources.responses import (
    EXPECT,
    DeadlineExceeded,
    check_type,
    read_body,
    scrub,
)

__all__ = [
    "RETRY_STATUSES",
    "EXPECT",
    "MAX_RETRY_AFTER",
    "Fetched",
    "CappedRetry",
    "make_session",
    "load_token",
    "safe_url",
    "get_text",
    "download",
]

log = logging.getLogger(__name__)

#: Statuses worth retrying: rate limiting and transient server-side failures.
RETRY_STATUSES = (429, 500, 502, 503, 504)

#: Default cap, in seconds, on a server's ``Retry-After`` (a longer request is cut to this).
MAX_RETRY_AFTER = 60.0

# The monotonic time by which the current get_text/download call must end (None: no deadline).
# A context variable, because urllib3 sleeps between retries inside one session.request call
# and the session (hence its Retry) is shared between calls.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "astropipe_http_deadline", default=None
)


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


class CappedRetry(Retry):
    """urllib3 ``Retry`` that caps ``Retry-After``, logs every wait and keeps to the deadline.

    urllib3 sleeps silently between retries, as long as the server asks (up to six hours by
    default). Here a ``Retry-After`` above ``retry_after_max`` is cut to it, each wait is
    logged at INFO with the URL (credentials removed), and a wait that would run past the
    current call's deadline is not started: :class:`DeadlineExceeded` ends the call instead.
    """

    #: The URL being retried, credentials removed (set by :meth:`increment`).
    where: str = ""

    def increment(
        self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None
    ):  # type: ignore[no-untyped-def]  # noqa: E501
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        if _pool is not None and url is not None:
            port = f":{_pool.port}" if _pool.port else ""
            new.where = safe_url(f"{_pool.scheme}://{_pool.host}{port}{url}")
        else:
            new.where = self.where
        return new

    def _wait(self, seconds: float, why: str) -> None:
        done = len(self.history)
        total = done + (self.total if isinstance(self.total, int) else 0)
        end = _DEADLINE.get()
        if end is not None and time.monotonic() + seconds > end:
            raise DeadlineExceeded(f"the next retry would start after the deadline ({why})")
        log.info(
            "waiting %g s (%s) before retry %d of %d for %s",
            seconds, why, done, total, self.where or "the request",
        )  # fmt: skip
        time.sleep(seconds)

    def sleep_for_retry(self, response) -> bool:  # type: ignore[no-untyped-def]
        header = response.headers.get("Retry-After")
        wait = self.get_retry_after(response)  # already capped at retry_after_max
        if not wait:
            return False
        why = "Retry-After"
        if header is not None and header.strip().isdigit() and int(header) > wait:
            why = f"Retry-After {header.strip()} s capped at max_retry_after"
        self._wait(wait, why)
        return True

    def sleep(self, response=None) -> None:  # type: ignore[no-untyped-def]
        if self.respect_retry_after_header and response is not None:
            if self.sleep_for_retry(response):
                return
        backoff = self.get_backoff_time()
        if backoff > 0:
            self._wait(backoff, "backoff")


def make_session(
    *,
    retries: int,
    backoff_factor: float,
    token: str | None = None,
    user_agent: str = f"astropipe/{__version__}",
    max_retry_after: float = MAX_RETRY_AFTER,
    auth_scheme: str = "Bearer",
) -> requests.Session:
    """Build a ``requests`` session that retries transient failures.

    Parameters
    ----------
    retries
        Retries on connection errors, read timeouts and the statuses in :data:`RETRY_STATUSES`.
    backoff_factor
        Seconds; the n-th retry waits ``backoff_factor * 2**(n-1)`` unless the server sent a
        ``Retry-After`` header, which is honoured up to ``max_retry_after``.
    token
        Optional token, sent only in the ``Authorization`` header as
        ``<auth_scheme> <token>``.
    user_agent
        The ``User-Agent`` header.
    max_retry_after
        Seconds; the longest ``Retry-After`` honoured (a longer one is cut to this, and logged).
    auth_scheme
        The word before the token: ``Bearer`` (IRSA) or ``token`` (the MAST API).

    Returns
    -------
    requests.Session
        With the retry adapter mounted on ``http://`` and ``https://``. The final response of
        an exhausted status retry is returned (not raised), so callers can report its status.
    """
    install_log_redaction()
    retry = CappedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        respect_retry_after_header=True,
        retry_after_max=max_retry_after,  # type: ignore[arg-type]  # a float works as well
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    if token:
        session.headers["Authorization"] = f"{auth_scheme} {token}"
    return session


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[float | None]:
    """Set the deadline of the current call; yield its monotonic end time (None: none)."""
    if seconds is not None and not seconds > 0:
        raise ValueError(f"deadline={seconds!r}; expected a positive number of seconds or None")
    end = None if seconds is None else time.monotonic() + float(seconds)
    token = _DEADLINE.set(end)
    try:
        yield end
    finally:
        _DEADLINE.reset(token)


def _late(shown: str, seconds: float | None, what: str, session: requests.Session) -> ServiceError:
    msg = (
        f"{shown}: no complete answer within the {seconds:g} s deadline ({what}); the service "
        "is too slow or rate limiting; retry later, or raise the deadline in the config."
    )
    return ServiceError(scrub(msg, session))


def _send(
    session: requests.Session,
    method: str,
    url: str,
    params: Any,
    timeout: tuple[float, float],
    *,
    stream: bool,
    deadline: float | None = None,
    data: Any = None,
) -> requests.Response:
    shown = safe_url(url, params)
    try:
        response = session.request(
            method, url, params=params, data=data, timeout=timeout, stream=stream
        )
    except DeadlineExceeded as exc:
        raise _late(shown, deadline, str(exc), session) from None
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
    deadline: float | None = None,
    data: Any = None,
) -> Fetched:
    """Request ``url`` and return its checked body.

    Parameters
    ----------
    session
        From :func:`make_session`.
    url, params
        Endpoint and query parameters (a mapping or a list of pairs; repeated keys allowed).
        Credentials in ``url`` are used but never recorded.
    timeout
        ``(connect, read)`` seconds; the read timeout bounds each wait for bytes.
    expect
        A key of :data:`EXPECT`: the Content-Types accepted. An HTML page is always refused.
    method
        ``GET`` or ``POST`` (both retried).
    deadline
        Seconds for the whole call (retries, waits and body); None: no bound beyond the
        timeouts. Checked between reads, so it can be overrun by at most one read timeout.
    data
        A form body for ``POST`` (a mapping: sent form-encoded). It is not part of the URL
        recorded in :attr:`Fetched.url` or in messages; callers name the request themselves.

    Returns
    -------
    Fetched
        The body, its hash and the (credential-free) URL.

    Raises
    ------
    ServiceError
        Unreachable, timed out, past the deadline, or an HTTP error status after the retries.
    ServiceResponseError
        An HTML page, an unexpected Content-Type, an empty or truncated body.
    """
    if expect not in EXPECT:
        raise ValueError(f"expect={expect!r}; valid values are {sorted(EXPECT)}")
    shown = safe_url(url, params)
    with _deadline(deadline) as end:
        response = _send(
            session, method, url, params, _timeouts(timeout), stream=True, deadline=deadline,
            data=data,
        )  # fmt: skip
        parts: list[bytes] = []
        try:
            read_body(response, shown, session, parts.append, deadline=end)
        except DeadlineExceeded as exc:
            raise _late(shown, deadline, str(exc), session) from None
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
        sha256=sha256_bytes(content),
    )


def download(
    session: requests.Session,
    url: str,
    dest: str | os.PathLike[str],
    *,
    timeout: tuple[float, float],
    params: Any = None,
    expect: str = "any",
    deadline: float | None = None,
    progress: bool = False,
) -> str:
    """Stream ``url`` to ``dest`` through a temporary sibling renamed on success.

    Parameters
    ----------
    session, url, params, timeout, expect, deadline
        As for :func:`get_text`.
    dest
        Final path. Nothing appears under this name unless the whole body arrived.
    progress
        Show a byte progress bar on stderr (:mod:`astropipe.progress`).

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
    digest = sha256_stream()
    with _deadline(deadline) as end:
        response = _send(
            session, "GET", url, params, _timeouts(timeout), stream=True, deadline=deadline
        )
        size = response.headers.get("Content-Length", "")
        with (
            atomic_path(dest) as tmp,
            open(tmp, "wb") as fh,
            progress_bar(
                total=int(size) if size.isdigit() else None,
                desc=Path(dest).name,
                unit="B",
                unit_scale=True,
                enabled=progress,
            ) as shown_bar,
        ):

            def sink(chunk: bytes) -> None:
                fh.write(chunk)
                digest.update(chunk)
                shown_bar.update(len(chunk))

            def check(head: bytes) -> None:
                check_type(response, head, expect, shown, session)

            try:
                received = read_body(response, shown, session, sink, check, deadline=end)
            except DeadlineExceeded as exc:
                raise _late(shown, deadline, str(exc), session) from None
            if received == 0:
                msg = f"{shown}: empty answer (0 bytes) where a file was expected; retry later."
                raise ServiceResponseError(scrub(msg, session))
    log.info("downloaded %s -> %s (%d bytes)", shown, dest, received)
    return digest.hexdigest()


def _timeouts(timeout: Any) -> tuple[float, float]:
    """Accept ``[connect, read]`` from config (a list) as well as a tuple."""
    connect, read = (float(t) for t in timeout)
    return connect, read
