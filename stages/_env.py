"""Imported first by every stage script: a python without the project's packages gets one line.

``python3 stages/ingest_ztf.py`` with a python that is not the project's (no astropipe, numpy,
hydra, ...) would end in a ``ModuleNotFoundError`` traceback. This module cannot use astropipe
(it may be the missing one), so it only installs an exception hook that turns an uncaught
``ModuleNotFoundError`` into the same hint :func:`astropipe.stage_main.stage_main` gives.
"""

import sys

HINT = (
    "error: {exc} (python: {python}); the stages need the project's environment: activate "
    ".venv (`source .venv/bin/activate`) or use `make repro` (`make setup` creates .venv)."
)

_default_hook = sys.excepthook


def _hook(kind, exc, tb):  # noqa: ANN001 - the signature of sys.excepthook
    if issubclass(kind, ModuleNotFoundError):
        print(HINT.format(exc=exc, python=sys.executable), file=sys.stderr)
        return
    _default_hook(kind, exc, tb)


sys.excepthook = _hook
