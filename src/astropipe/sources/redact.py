"""Keep credentials out of everything astropipe records: URLs, parameters, messages, log lines.

A configured URL may carry credentials (``https://user:pass@host/...`` or ``?token=...``);
requests still uses them, but no copy of them may reach provenance, reports, error messages or
log records. Three tools, used at every place a URL is recorded:

- :func:`safe_url`: one URL without user info and with secret-looking query values replaced;
- :func:`redact_params`: a parameter mapping with every URL string passed through
  :func:`safe_url` (other values untouched, so credential-free params keep their exact bytes);
- :func:`scrub_text`: free text (an error message, a log line) with URL user info and
  ``secret=value`` pairs replaced.

This module imports nothing heavy, so :mod:`astropipe.provenance` can use it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "SECRET_PARAMS",
    "safe_url",
    "redact_params",
    "scrub_text",
    "install_log_redaction",
]

#: Query-parameter names whose values are secrets (matched anywhere in the name, any case).
SECRET_PARAMS = re.compile(r"(token|key|secret|password|passwd|auth|signature|credential)", re.I)

_MASK = "***"
# ``scheme://user[:password]@`` — the user info of a URL anywhere in a text.
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/\s@?#]+@", re.I)
# ``name=value`` where the name looks secret: in a query string, a form body or a message.
_SECRET_PAIR = re.compile(
    r"(?P<name>\b[\w.-]*(?:token|key|secret|password|passwd|auth|signature|credential)"
    r"[\w.-]*)=(?!%2A%2A%2A)(?P<value>[^&\s'\"#;,)]+)",  # already masked: left as is
    re.I,
)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def safe_url(url: str, params: Any = None) -> str:
    """Return ``url`` (with ``params`` appended) minus user info and secret-looking parameters.

    Parameters
    ----------
    url
        An absolute URL, possibly with ``user:password@`` and a query.
    params
        Extra query parameters (a mapping or a list of pairs), as passed to ``requests``.

    Returns
    -------
    str
        The URL as it may be recorded: host and port kept, user info dropped, the value of
        every parameter whose name matches :data:`SECRET_PARAMS` replaced by ``***``.
    """
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if params:
        items = params.items() if hasattr(params, "items") else params
        query += [(str(k), str(v)) for k, v in items]
    query = [(k, _MASK if SECRET_PARAMS.search(k) else v) for k, v in query]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def _needs_redaction(url: str) -> bool:
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return True
    return any(SECRET_PARAMS.search(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True))


def redact_params(value: Any) -> Any:
    """Return ``value`` with every URL string inside it passed through :func:`safe_url`.

    Mappings and lists are copied and walked; a URL is rewritten only when it carries user info
    or a secret-looking parameter, so a credential-free parameter set comes back equal (and
    serialises to the same bytes: recorded provenance does not churn).
    """
    if isinstance(value, str):
        return safe_url(value) if _URL.match(value) and _needs_redaction(value) else value
    if isinstance(value, Mapping):
        return {k: redact_params(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_params(v) for v in value)
    return value


def scrub_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove URL user info, ``secret=value`` pairs and the given ``secrets`` from ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _MASK)
    text = _USERINFO.sub(r"\g<scheme>", text)
    return _SECRET_PAIR.sub(lambda m: f"{m.group('name')}={_MASK}", text)


class _RedactFilter(logging.Filter):
    """Rewrite a record's message so it carries no credentials (urllib3 logs raw URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: leave it to the handler
            return True
        clean = scrub_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _RedactFilter()

#: Loggers of the HTTP stack that write request URLs (with their query) at DEBUG level.
_HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager")


def install_log_redaction() -> None:
    """Attach the credential filter to urllib3's loggers (idempotent)."""
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
