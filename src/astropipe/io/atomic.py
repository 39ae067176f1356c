"""Atomic writes: write to a temporary sibling, then rename into place.

A crash or an exception never leaves a half-written output under the final name, and the
temporary file or directory is removed on failure. A process killed outright (SIGKILL, power
loss) cannot clean up: its ``.<name>.XXXXXXXX.tmp`` sibling stays behind until the next writer
of the same output, holding that output's lock (:mod:`astropipe.io.lock`), calls
:func:`remove_stale_temps`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_dir", "replace_dir", "stale_temps", "remove_stale_temps"]

log = logging.getLogger(__name__)

# tempfile's random names: 8 characters from this alphabet (tempfile._RandomNameSequence)
_RANDOM = r"[a-z0-9_]{8}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    Parameters
    ----------
    target
        Final file path. Its parent directory is created if needed.

    Yields
    ------
    pathlib.Path
        A path in the same directory (so the rename is atomic on POSIX) that the caller writes.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; outputs are shared with teammates, so use the usual umask mode.
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory; swap it in place of ``target`` on success.

    An existing ``target`` is replaced whole. On failure the temporary directory is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        yield tmp
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: Path, target: Path) -> None:
    """Move directory ``src`` onto ``target``, removing the old ``target`` only after the move."""
    old: Path | None = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(src, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Temporary siblings of ``target`` left by a killed writer, in name order.

    Only names this module creates match: ``.<name>.XXXXXXXX.tmp`` (8 characters from
    tempfile's alphabet) and ``.<name>.old`` (see :func:`replace_dir`), owned by the current
    user and not symlinks. Anything else next to ``target`` is never listed.
    """
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.({_RANDOM}\.tmp|old)")
    if not target.parent.is_dir():
        return []
    out = []
    for entry in sorted(target.parent.iterdir()):
        if not pattern.fullmatch(entry.name):
            continue
        st = entry.lstat()
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid():
            continue
        out.append(entry)
    return out


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove :func:`stale_temps` of ``target``; return what was removed.

    Call it only while holding ``target``'s lock (:class:`astropipe.io.lock.OutputLock`):
    without it, a live writer's temporary directory would look stale.
    """
    removed = stale_temps(target)
    for path in removed:
        log.warning("removing %s, left by an interrupted run", path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed
