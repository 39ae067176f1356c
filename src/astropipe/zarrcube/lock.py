"""The writer lock of a Zarr store: :class:`astropipe.io.lock.OutputLock` on ``<store>.lock``."""

from __future__ import annotations

import os

from astropipe.io.lock import OutputLock, lock_path

__all__ = ["StoreLock", "lock_path"]


class StoreLock(OutputLock):
    """Exclusive, crash-safe lock on ``store`` held by a fits_to_zarr writer (non-blocking)."""

    def __init__(self, store: str | os.PathLike[str]) -> None:
        super().__init__(store, writer="fits_to_zarr")
