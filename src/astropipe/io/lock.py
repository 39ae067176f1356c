"""An exclusive, crash-safe lock on an output: ``<output>.lock`` held with ``flock``.

The kernel drops an ``flock`` when its process dies (even on SIGKILL), so a crashed writer never
leaves a stale lock behind; the file itself only records who holds it. Holding the lock is
also what makes it safe to remove a killed run's temporary files
(:func:`astropipe.io.atomic.remove_stale_temps`): no other writer of the output is alive.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from astropipe.errors import LockedError

__all__ = ["OutputLock", "lock_path"]


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of ``target``: a sibling named ``<target>.lock``."""
    target = Path(target)
    return target.with_name(target.name + ".lock")


class OutputLock:
    """Context manager holding the exclusive lock on ``target`` (non-blocking).

    Parameters
    ----------
    target
        The output file or directory to protect.
    writer
        Who writes it, for the message (e.g. ``"ingest_ztf"``).

    Raises
    ------
    LockedError
        When another process holds the lock; the message names the lock file and its holder.
    """

    def __init__(self, target: str | os.PathLike[str], *, writer: str) -> None:
        self.path = lock_path(target)
        self.writer = writer
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise LockedError(
                    f"{self.path}: another {self.writer} run holds this lock (pid {holder}); "
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
