"""The cosmic-ray pass in a child process that is replaced every few bands.

astroscrappy 1.3.0 leaks one byte per pixel of every image it is handed: ``update_mask`` calls
``dilate5(satpixels, 2)``, whose C code (``PyDilate5`` in ``utils/imutils.c``) ``malloc``\\ s an
``nx × ny`` scratch array for its second iteration and never frees it. ``malloc_trim`` cannot
give that back (measured: +1.0 byte/pixel/call with or without it), so the pass runs in a
child process (``concurrent.futures`` on a ``multiprocessing`` ``spawn`` context: no copy of
the parent's heap) that is replaced after ``tasks_per_child`` bands, and the leak dies with
it.

Nothing big crosses the process boundary: the child reads each band's SCI, ERR and MASK rows
(with their context) itself from the output file being written, at their byte offsets
(:class:`StoredRows`), and sends back only the band's own cosmic-ray mask, packed 8 pixels a
byte. The parent ORs it into MASK and writes it. The child imports numpy, astroscrappy and this
module (plus the parent's ``__main__``, as ``spawn`` does).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from astropipe.calibration.cosmics import cosmics_rows
from astropipe.errors import AstropipeError

__all__ = [
    "StoredRows",
    "PassSpec",
    "CosmicsChildError",
    "run_in_child",
    "band_mask",
    "release_free_heap",
]


@dataclass(frozen=True)
class StoredRows:
    """An uncompressed, unscaled 2-D image in a file: where its data unit starts, its stored
    (big-endian) dtype and shape. Picklable; read by ``pread``."""

    path: str
    offset: int
    dtype: str
    shape: tuple[int, int]

    def read(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``[r0, r1)`` as a new native-order array."""
        cols = self.shape[1]
        stored = np.dtype(self.dtype)
        out = np.empty((r1 - r0, cols), dtype=stored)
        view = out.reshape(-1).view(np.uint8)
        start = self.offset + r0 * cols * stored.itemsize
        fd = os.open(self.path, os.O_RDONLY)
        try:
            done = 0
            while done < view.nbytes:
                got = os.preadv(fd, [view[done:]], start + done)
                if got <= 0:
                    raise OSError(f"{self.path}: short read at byte {start + done}")
                done += got
        finally:
            os.close(fd)
        return out.astype(stored.newbyteorder("="), copy=False)


@dataclass(frozen=True)
class PassSpec:
    """Everything a child needs for the cosmic-ray pass of one frame (small, picklable)."""

    sci: StoredRows
    err: StoredRows
    mask: StoredRows
    read_noise: float
    saturation: float
    options: Mapping[str, Any]  # the CosmicsConfig fields, as a plain mapping
    margin: int
    tile_cols: int | None
    ignore_bits: int  # MASK bits the detection must not see (the cosmic-ray bit itself)


_SPEC: PassSpec | None = None


def release_free_heap() -> bool:
    """Give glibc's free heap back to the system (``malloc_trim(0)``); False when the C library
    is not glibc. It frees nothing in use (and cannot recover astroscrappy's leak): it only
    keeps freed band buffers from counting in the RSS beside the cosmic-ray child."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _init(spec: PassSpec) -> None:
    global _SPEC
    _SPEC = spec


def band_mask(spec: PassSpec, r0: int, r1: int) -> np.ndarray:
    """Cosmic-ray mask of rows ``[r0, r1)``, read with ``spec.margin`` context rows."""
    rows = spec.sci.shape[0]
    a0, a1 = max(r0 - spec.margin, 0), min(r1 + spec.margin, rows)
    mask = spec.mask.read(a0, a1)
    bad = (mask & np.uint8(0xFF ^ spec.ignore_bits)) != 0
    del mask
    return cosmics_rows(
        spec.sci.read(a0, a1),
        err=spec.err.read(a0, a1),
        read_noise=spec.read_noise,
        saturation=spec.saturation,
        bad=bad,
        cfg=SimpleNamespace(**spec.options),  # type: ignore[arg-type]
        keep=slice(r0 - a0, r1 - a0),
        tile_cols=spec.tile_cols,
        margin=spec.margin,
    )


def _band(rows: tuple[int, int]) -> bytes:
    assert _SPEC is not None
    return np.packbits(band_mask(_SPEC, *rows)).tobytes()


class CosmicsChildError(AstropipeError, RuntimeError):
    """The cosmic-ray child process died (killed, out of memory) before finishing."""


def run_in_child(
    spec: PassSpec,
    bands: Sequence[tuple[int, int]],
    on_band: Callable[[int, int, np.ndarray], None],
    *,
    tasks_per_child: int,
) -> None:
    """Run :func:`band_mask` on each of ``bands`` in one child process at a time, replaced
    after ``tasks_per_child`` bands; ``on_band(r0, r1, mask)`` gets each band's mask in order.

    ``concurrent.futures`` rather than ``multiprocessing.Pool``: a child that dies (the OOM
    killer) raises :class:`CosmicsChildError` instead of hanging the stage.
    """
    cols = spec.sci.shape[1]
    per_child = max(int(tasks_per_child), 1)
    context = multiprocessing.get_context("spawn")
    try:
        # A new one-process executor for each run of bands, not ``max_tasks_per_child``: on
        # Python 3.11 that option can deadlock once the worker exits (CPython gh-115634).
        for first in range(0, len(bands), per_child):
            chunk = list(bands[first : first + per_child])
            with ProcessPoolExecutor(
                max_workers=1, mp_context=context, initializer=_init, initargs=(spec,)
            ) as pool:
                for (r0, r1), packed in zip(chunk, pool.map(_band, chunk), strict=True):
                    bits = np.unpackbits(
                        np.frombuffer(packed, dtype=np.uint8), count=(r1 - r0) * cols
                    )
                    on_band(r0, r1, bits.reshape(r1 - r0, cols).view(bool))
    except BrokenProcessPool:
        raise CosmicsChildError(
            f"{spec.sci.path}: the cosmic-ray child process died (out of memory?); raise "
            "calibration.memory_limit or free memory and run again."
        ) from None
