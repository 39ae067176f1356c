"""Checks on what a service answered: Content-Type, HTML error pages, short bodies, secrets.

Used by :mod:`astropipe.sources.http`; every message is scrubbed of the session's token.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import requests

from astropipe.errors import ServiceResponseError

__all__ = ["EXPECT", "scrub", "check_type", "read_body", "looks_like_html"]

#: What a caller may ask for → the Content-Types accepted for it. ``None`` = any type.
EXPECT: dict[str, tuple[str, ...] | None] = {
    "csv": ("text/csv", "text/plain", "application/csv", "text/comma-separated-values"),
    "json": ("application/json", "text/json", "text/plain"),
    "text": ("text/plain",),
    "any": None,
}

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_CHUNK = 1 << 16


def scrub(text: str, session: requests.Session) -> str:
    """Remove the session's credentials from ``text`` (defence in depth for error messages)."""
    auth = session.headers.get("Authorization")
    if isinstance(auth, bytes):
        auth = auth.decode("latin-1")
    if auth:
        secret = auth.split(" ", 1)[-1]
        if secret:
            text = text.replace(secret, "***")
    return text


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
) -> int:
    """Stream the body into ``sink(chunk)``; check the byte count against Content-Length.

    ``check(first_chunk)`` runs before anything reaches ``sink``, so a refused body (an HTML
    page) is never written.
    """
    received = 0
    try:
        for chunk in response.iter_content(_CHUNK):
            if check is not None and received == 0:
                check(chunk)
            received += len(chunk)
            sink(chunk)
    except requests.exceptions.RequestException as exc:
        declared = response.headers.get("Content-Length")
        expected = f" of the {declared} declared" if declared else ""
        try:
            received = max(received, int(response.raw.tell()))
        except (AttributeError, TypeError, ValueError):
            pass
        detail = f" after {received} bytes{expected} ({exc.__class__.__name__})"
        raise _truncated(shown, detail, session) from None
    finally:
        response.close()
    declared = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if declared is not None and not encoded and declared.isdigit() and int(declared) != received:
        detail = f": Content-Length {declared}, received {received} bytes"
        raise _truncated(shown, detail, session)
    return received


def _truncated(shown: str, detail: str, session: requests.Session) -> ServiceResponseError:
    """The one error for a short body; ``detail`` says how it was noticed."""
    msg = f"{shown}: body truncated{detail}; nothing was written; retry later."
    return ServiceResponseError(scrub(msg, session))
