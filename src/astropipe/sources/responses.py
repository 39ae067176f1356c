"""Checks on what a service answered: Content-Type, HTML error pages, short bodies, secrets.

Used by :mod:`astropipe.sources.http`; every message is scrubbed of the session's token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import requests
import urllib3.exceptions

from astropipe.errors import ServiceResponseError
from astropipe.sources.redact import scrub_text

__all__ = [
    "EXPECT",
    "DeadlineExceeded",
    "scrub",
    "check_type",
    "read_body",
    "looks_like_html",
]

#: What a caller may ask for → the Content-Types accepted for it. ``None`` = any type.
EXPECT: dict[str, tuple[str, ...] | None] = {
    "csv": ("text/csv", "text/plain", "application/csv", "text/comma-separated-values"),
    "json": ("application/json", "text/json", "text/plain"),
    "text": ("text/plain",),
    "any": None,
}


class DeadlineExceeded(Exception):
    """Internal: the call's deadline passed; :mod:`astropipe.sources.http` turns it into a
    :class:`~astropipe.errors.ServiceError` naming the URL (never reaches a user as is)."""


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_CHUNK = 1 << 16


def scrub(text: str, session: requests.Session) -> str:
    """Remove the session's token, URL user info and ``secret=value`` pairs from ``text``.

    Defence in depth: messages are built from credential-free URLs already, but a server may
    echo what it was sent (an HTML title, an error body).
    """
    auth = session.headers.get("Authorization")
    if isinstance(auth, bytes):
        auth = auth.decode("latin-1")
    secret = auth.split(" ", 1)[-1] if auth else ""
    return scrub_text(text, (secret,) if secret else ())


def _media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def looks_like_html(head: bytes) -> bool:
    start = head.lstrip()[:15].lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _html_title(content: bytes, session: requests.Session) -> str:
    match = _TITLE.search(content[:8192])
    if not match:
        return ""
    # Scrub before shortening, so a cut cannot leave part of a secret behind.
    title = scrub(" ".join(match.group(1).decode("utf-8", errors="replace").split()), session)
    return f" (page title: {title[:80]!r})"


def check_type(
    response: requests.Response, head: bytes, expect: str, shown: str, session: requests.Session
) -> str:
    ctype = _media_type(response)
    accepted = EXPECT[expect]
    what = f"{expect.upper()} ({', '.join(accepted)})" if accepted else "a data file"
    if ctype == "text/html" or looks_like_html(head):
        msg = (
            f"{shown}: expected {what}, got an HTML page{_html_title(head, session)}; the service "
            "answered with an error or login page; open the URL in a browser to see why."
        )
        raise ServiceResponseError(scrub(msg, session))
    if accepted is not None and ctype and ctype not in accepted:
        msg = (
            f"{shown}: expected {what}, got Content-Type {ctype!r}; check the FORMAT/"
            "query parameters and the service documentation."
        )
        raise ServiceResponseError(scrub(msg, session))
    return ctype


def read_body(
    response: requests.Response,
    shown: str,
    session: requests.Session,
    sink: Callable[[bytes], object],
    check: Callable[[bytes], object] | None = None,
    *,
    deadline: float | None = None,
) -> int:
    """Stream the body into ``sink(chunk)``; check the byte count against Content-Length.

    ``check(first_chunk)`` runs before anything reaches ``sink``, so a refused body (an HTML
    page) is never written. Bytes are taken as they arrive (``read1``), not in fixed 64 KiB
    blocks: so ``deadline`` (a :func:`time.monotonic` end time) is checked after every
    arrival, however slowly a server drips, and a cut body reports exactly the bytes that came.

    Raises
    ------
    ServiceResponseError
        The body was cut short (the message gives the bytes received and declared).
    DeadlineExceeded
        ``deadline`` passed before the body was complete.
    """
    received = 0
    raw = response.raw
    try:
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceeded(f"{received} bytes of the body received")
            chunk = raw.read1(_CHUNK, decode_content=True)
            if not chunk:
                break
            if check is not None and received == 0:
                check(chunk)
            received += len(chunk)
            sink(chunk)
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        declared = response.headers.get("Content-Length")
        expected = f" of the {declared} declared" if declared else ""
        count = f"{received} bytes"
        if _encoded(response):  # Content-Length counts the compressed bytes on the wire
            count = f"{_wire_bytes(response)} bytes ({received} decoded)"
        detail = f" after {count}{expected} ({_reason(exc)})"
        raise _truncated(shown, detail, session) from None
    finally:
        response.close()
    declared = response.headers.get("Content-Length")
    short = declared is not None and declared.isdigit() and int(declared) != received
    if short and not _encoded(response):
        detail = f": Content-Length {declared}, received {received} bytes"
        raise _truncated(shown, detail, session)
    return received


def _encoded(response: requests.Response) -> bool:
    return response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")


def _wire_bytes(response: requests.Response) -> int | str:
    try:
        return int(response.raw.tell())
    except (AttributeError, TypeError, ValueError):
        return "?"


def _reason(exc: BaseException) -> str:
    """``ProtocolError: IncompleteRead``-style name of what broke, without its (URL) text."""
    name = exc.__class__.__name__
    inner = next((a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)), None)
    return f"{name}: {inner.__class__.__name__}" if inner is not None else name


def _truncated(shown: str, detail: str, session: requests.Session) -> ServiceResponseError:
    """The one error for a short body; ``detail`` says how it was noticed."""
    msg = f"{shown}: body truncated{detail}; nothing was written; retry later."
    return ServiceResponseError(scrub(msg, session))
