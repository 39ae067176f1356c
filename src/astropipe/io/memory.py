"""Give freed memory back to the operating system.

Long stages free large buffers (a frame's bands, a light-curve bucket deduplicated in pandas)
and then allocate similar ones again; glibc keeps the freed pages in its heap, so the RSS counts
them and creeps up as the heap fragments. :func:`release_free_heap` returns them.
"""

from __future__ import annotations

import ctypes
import functools
import platform

__all__ = ["release_free_heap"]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # pragma: no cover - glibc without the usual soname
        return None


def release_free_heap(*, arrow: bool = False) -> bool:
    """Give glibc's free heap back to the system (``malloc_trim(0)``).

    It frees nothing in use; it only keeps freed buffers from counting in the RSS.

    Parameters
    ----------
    arrow
        First return the unused memory of Arrow's default pool (``release_unused``), whose
        freed buffers would otherwise stay cached there.

    Returns
    -------
    bool
        Whether ``malloc_trim`` released memory; False when the C library is not glibc.
    """
    if arrow:
        import pyarrow as pa  # here: the cosmic-ray child uses this module without Arrow

        pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is None:
        return False
    try:
        return bool(libc.malloc_trim(0))
    except AttributeError:  # pragma: no cover - a glibc without malloc_trim
        return False
