"""An exclusive, crash-safe lock on a Zarr store: ``<store>.lock`` held with ``flock``.

The kernel drops an ``flock`` when its process dies (even on SIGKILL), so a crashed writer never
leaves a stale lock behind; the file itself only records who holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from astropipe.errors import LockedError

__all__ = ["StoreLock", "lock_path"]


def lock_path(store: str | os.PathLike[str]) -> Path:
    """The lock file of ``store``: a sibling named ``<store>.lock``."""
    store = Path(store)
    return store.with_name(store.name + ".lock")


class StoreLock:
    """Context manager holding the exclusive lock on ``store`` (non-blocking).

    Raises
    ------
    LockedError
        When another process holds the lock; the message names the lock file and its holder.
    """

    def __init__(self, store: str | os.PathLike[str]) -> None:
        self.path = lock_path(store)
        self._fd: int | None = None

    def __enter__(self) -> StoreLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise LockedError(
                    f"{self.path}: another fits_to_zarr writer holds this lock (pid {holder}); "
                    "wait for it to finish — the lock is released when that process exits."
                ) from None
            # the holder before us may have unlinked the file after we opened it: retry then
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # still under the lock: nobody else can hold it
            os.close(self._fd)
            self._fd = None
