"""Error hierarchy: every failure astropipe raises on purpose derives from :class:`AstropipeError`.

Each subclass also inherits the builtin it narrows, so ``except ValueError`` keeps working for
callers that do not know astropipe. Messages are one line: what was expected, what was found,
which file, and what to do.
"""

from __future__ import annotations

from typing import Any

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
    """Base class of every error astropipe raises on purpose.

    Every subclass survives pickling, whatever its ``__init__`` takes: an error raised in a
    compute task on another process or machine, or in the cosmic-ray child, comes back as
    itself with its attributes (e.g. :class:`~astropipe.calibration.frames.HeaderValueError`'s
    ``path`` and ``kind``).
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle's default rebuilds with cls(*self.args), which cannot pass keyword-only
        # arguments (HeaderValueError(message, path=, kind=) raised a TypeError on loading):
        # rebuild without __init__, then restore the attributes.
        return (_rebuild, (type(self), self.args, dict(vars(self))))


def _rebuild(cls: type[AstropipeError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """An unpickled :class:`AstropipeError`: ``args`` as raised, attributes restored."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


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
