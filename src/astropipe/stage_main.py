"""Entry-point wrapper shared by the stage scripts and the ``astropipe`` command."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from astropipe.errors import AstropipeError

__all__ = ["stage_main", "setup_logging", "MISSING_ENV_HINT"]

#: What a python without the project's packages is told (stages/_env.py says the same for an
#: import that fails before astropipe itself is importable).
MISSING_ENV_HINT = (
    "error: {exc} (python: {python}); the stages need the project's environment: activate "
    ".venv (`source .venv/bin/activate`) or use `make repro` (`make setup` creates .venv)."
)


def setup_logging(level: str | None = None) -> None:
    """Log to stderr at ``ASTROPIPE_LOG_LEVEL`` (default INFO), one line per record."""
    logging.basicConfig(
        level=(level or os.environ.get("ASTROPIPE_LOG_LEVEL", "INFO")).upper(),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def stage_main(fn: Callable[[], Any]) -> None:
    """Run ``fn``; turn an :class:`AstropipeError` into one line on stderr and exit status 1.

    A ``ModuleNotFoundError`` (a dependency imported lazily, missing from this python) is one
    line too: :data:`MISSING_ENV_HINT`.
    """
    setup_logging()
    try:
        fn()
    except AstropipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except ModuleNotFoundError as exc:
        print(MISSING_ENV_HINT.format(exc=exc, python=sys.executable), file=sys.stderr)
        raise SystemExit(1) from None
