"""The cosmic-ray pass in a child process that is replaced every few bands.

astroscrappy 1.3.0 leaks one byte per pixel of every image it is handed: ``update_mask`` calls
``dilate5(satpixels, 2)``, whose C code (``PyDilate5`` in ``utils/imutils.c``) ``malloc``\\ s an
``nx × ny`` scratch array for its second iteration and never frees it. ``malloc_trim`` cannot
give that back (measured: +1.0 byte/pixel/call with or without it), so the pass runs in a
child process that is replaced after ``tasks_per_child`` bands, and the leak dies with it.

The child is a fresh interpreter started with :class:`subprocess.Popen` (``python -m
astropipe.calibration.crchild``; no copy of the parent's heap), not a ``multiprocessing``
process: the stage may itself run in a dask worker, and a dask nanny's worker is a daemonic
process, from which ``multiprocessing`` refuses to start children. The parent writes the
:class:`PassSpec` and the child's bands to its stdin (pickled); the child writes one pickled
reply per band to its stdout, in order (its own prints go to stderr).

Nothing big crosses the process boundary: the child reads each band's SCI, ERR and MASK rows
(with their context) itself from the output file being written, at their byte offsets
(:class:`StoredRows`), and sends back only the band's own cosmic-ray mask, packed 8 pixels a
byte. The parent ORs it into MASK and writes it. The child imports numpy, astroscrappy and this
module.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import numpy as np

from astropipe.calibration.cosmics import cosmics_rows
from astropipe.errors import AstropipeError
from astropipe.io.memory import release_free_heap  # re-exported: the stage trims through it

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


class CosmicsChildError(AstropipeError, RuntimeError):
    """The cosmic-ray child process died (killed, out of memory) before finishing."""


def _child_main(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The child: read ``(spec, bands)``, reply ``("ok", packed mask)`` per band in order, or
    ``("error", exception)`` once and stop."""
    spec, bands = pickle.load(stdin)
    for r0, r1 in bands:
        try:
            reply: tuple[str, Any] = ("ok", np.packbits(band_mask(spec, r0, r1)).tobytes())
        except Exception as exc:  # re-raised in the parent, which names the frame
            reply = ("error", exc)
        pickle.dump(reply, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()
        if reply[0] == "error":
            return


def _child_env() -> dict[str, str]:
    """The parent's environment, with this package importable however the parent found it."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _reply(stdout: IO[bytes], where: str) -> tuple[str, Any]:
    """The child's next reply; one that cannot be rebuilt here is a CosmicsChildError.

    EOFError and UnpicklingError (the child died mid-reply) propagate for the caller; any
    other failure to load (an exception class whose pickle cannot be rebuilt, a module the
    parent cannot import) would otherwise surface as a bare TypeError or ImportError.
    """
    try:
        return pickle.load(stdout)
    except (EOFError, pickle.UnpicklingError):
        raise
    except Exception as exc:
        raise CosmicsChildError(
            f"{where}: the cosmic-ray child's reply cannot be read in this process "
            f"({type(exc).__name__}: {exc}); this is a bug, report it with the message."
        ) from None


def _run_chunk(
    spec: PassSpec,
    chunk: Sequence[tuple[int, int]],
    on_band: Callable[[int, int, np.ndarray], None],
) -> None:
    """One child for ``chunk``: send the work, take each band's mask as it comes."""
    cols = spec.sci.shape[1]
    died = CosmicsChildError(
        f"{spec.sci.path}: the cosmic-ray child process died (out of memory?); raise "
        "calibration.memory_limit or free memory and run again."
    )
    with subprocess.Popen(
        [sys.executable, "-m", "astropipe.calibration.crchild"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_child_env(),
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            pickle.dump((spec, list(chunk)), child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            child.stdin.close()
            for r0, r1 in chunk:
                status, value = _reply(child.stdout, spec.sci.path)
                if status == "error":
                    raise value
                bits = np.unpackbits(np.frombuffer(value, dtype=np.uint8), count=(r1 - r0) * cols)
                on_band(r0, r1, bits.reshape(r1 - r0, cols).view(bool))
        except (EOFError, BrokenPipeError, pickle.UnpicklingError):
            child.kill()
            raise died from None
        except BaseException:
            child.kill()
            raise
    if child.returncode != 0:
        raise died


def run_in_child(
    spec: PassSpec,
    bands: Sequence[tuple[int, int]],
    on_band: Callable[[int, int, np.ndarray], None],
    *,
    tasks_per_child: int,
) -> None:
    """Run :func:`band_mask` on each of ``bands`` in one child process at a time, replaced
    after ``tasks_per_child`` bands; ``on_band(r0, r1, mask)`` gets each band's mask in order.

    Raises
    ------
    CosmicsChildError
        A child died (the OOM killer, a signal) before sending all its bands.
    """
    per_child = max(int(tasks_per_child), 1)
    for first in range(0, len(bands), per_child):
        _run_chunk(spec, bands[first : first + per_child], on_band)


def main() -> None:
    """Entry point of the child (``python -m astropipe.calibration.crchild``)."""
    # The replies own the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    with replies:
        _child_main(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
