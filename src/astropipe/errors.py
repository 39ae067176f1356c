"""Error hierarchy: every failure astropipe raises on purpose derives from :class:`AstropipeError`.

Each subclass also inherits the builtin it narrows, so ``except ValueError`` keeps working for
callers that do not know astropipe. Messages are one line: what was expected, what was found,
which file, and what to do.
"""

from __future__ import annotations

__all__ = [
    "AstropipeError",
    "ConfigError",
    "InputFileError",
    "MissingInputError",
    "ServiceError",
    "ServiceResponseError",
    "ValidationFailed",
    "LockedError",
    "GridMismatchError",
]


class AstropipeError(Exception):
    """Base class of every error astropipe raises on purpose."""


class ConfigError(AstropipeError, ValueError):
    """A parameter is unknown, missing or out of range."""


class InputFileError(AstropipeError, ValueError):
    """An input file exists but cannot be read as the expected format."""


class MissingInputError(AstropipeError, FileNotFoundError):
    """An expected input file or directory does not exist or is empty."""


class ServiceError(AstropipeError, ConnectionError):
    """A remote service could not be reached or kept failing after retries.

    ``status`` is the final HTTP status when the service answered, else None.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServiceResponseError(AstropipeError, ValueError):
    """A remote service answered with something the parser does not recognise."""


class ValidationFailed(AstropipeError, AssertionError):
    """A data contract (expectation suite) failed on an artifact."""


class LockedError(AstropipeError, RuntimeError):
    """Another writer holds the lock on an output."""


class GridMismatchError(AstropipeError, ValueError):
    """Files that must share one pixel grid (shape and WCS) do not."""
