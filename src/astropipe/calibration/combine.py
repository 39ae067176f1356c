"""Tiled combination of a stack of frames: median, mean, and σ-clipped versions of both.

A stack of ``n`` frames is combined one band of rows at a time, so the peak memory is set by
the tile size, not by ``n × frame``. Each band is a dask task (run under the scheduler of the
``compute`` config group); the band height is chosen from ``calibration.memory_limit``.

The arithmetic follows ``ccdproc.combine`` so both give the same pixels:

- ``median``: the median of the unclipped values (mean of the two middle ones for an even
  count), as ``numpy.nanmedian``;
- ``average``: the mean of the unclipped values;
- σ-clipping as :func:`astropy.stats.sigma_clip` with ``axis=0``: a value is rejected when it
  lies strictly below ``center - low·std`` or strictly above ``center + high·std``, where
  ``center`` is the median (or mean) and ``std`` the population standard deviation (ddof=0)
  of the values still kept; rejection accumulates over at most ``maxiters`` iterations and
  stops early when nothing changes. ccdproc's ``combine(sigma_clip=True)`` passes
  ``maxiters=1``.

Implementation: each pixel's ``n`` values are sorted once; values clipped at each iteration
are always a prefix or a suffix of the sorted run, so the kept values stay a window
``[lo, hi)`` of the sorted array and no re-sorting or NaN handling is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from astropipe.configtypes import PositiveFloat, PositiveInt

__all__ = [
    "ClipConfig",
    "CombineConfig",
    "combine_stack",
    "combine_tiled",
    "tile_rows_for",
    "BandSink",
    "COMBINE_METHODS",
]

log = logging.getLogger(__name__)

CombineMethod = Literal["median", "average"]
CenterFunc = Literal["median", "mean"]
COMBINE_METHODS: tuple[str, ...] = get_args(CombineMethod)
CENTER_FUNCS: tuple[str, ...] = get_args(CenterFunc)

#: astropy's ``mad_std`` factor, 1 / Φ⁻¹(3/4): the standard deviation of a Gaussian from its MAD.
_MAD_TO_STD = 1.482602218505602


@dataclass(frozen=True)
class ClipConfig:
    """σ-clipping before combining (ccdproc ``sigma_clip_*`` arguments)."""

    enabled: bool = False
    low: PositiveFloat = 3.0  # in standard deviations (population std, ddof=0, as astropy)
    high: PositiveFloat = 3.0
    cenfunc: CenterFunc = "median"
    maxiters: PositiveInt = 1


@dataclass(frozen=True)
class CombineConfig:
    """How a master is combined from its frames."""

    method: CombineMethod = "median"
    clip: ClipConfig = field(default_factory=ClipConfig)


#: Pixels combined at once inside a band: keeps the temporaries small (cache-friendly, ~0.8 MB
#: each for 25 frames) whatever the band height.
_CHUNK_PIXELS = 4096


def _window_stats(
    s: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, sums: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, mean and population std of each column's sorted window ``[lo, hi)``.

    ``sums=False`` skips the mean and std (returned as the median). Deviations from the
    window's median keep the variance free of cancellation (values ~1e4, spreads ~1).
    """
    n = s.shape[0]
    count = hi - lo
    a = np.clip(lo + (count - 1) // 2, 0, n - 1)
    b = np.clip(lo + count // 2, 0, n - 1)
    cols = np.arange(s.shape[1])
    median = 0.5 * (s[a, cols] + s[b, cols])
    if not sums:
        return median, median, median
    rank = np.arange(n)[:, None]
    d = np.where((rank >= lo) & (rank < hi), s - median, 0.0)
    safe = np.maximum(count, 1)
    mean_dev = d.sum(axis=0) / safe
    var = np.maximum(np.einsum("ij,ij->j", d, d) / safe - mean_dev * mean_dev, 0.0)
    return median, median + mean_dev, np.sqrt(var)


def _clip_bounds(
    s: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``count(s < lower)`` and ``count(s <= upper)`` per column of the sorted ``s``.

    Columns are sorted, so values below ``lower`` are a prefix and values above ``upper`` a
    suffix: the rows are scanned from each end and the scan stops at the first row where no
    column clips, a handful of rows instead of all ``n``.
    """
    n = s.shape[0]
    below = np.zeros(s.shape[1], dtype=np.int64)
    for k in range(n):
        hit = s[k] < lower
        if not hit.any():
            break
        below += hit
    above = np.zeros(s.shape[1], dtype=np.int64)
    for k in range(n - 1, -1, -1):
        hit = s[k] > upper
        if not hit.any():
            break
        above += hit
    return below, n - above


def _combine_sorted(s: np.ndarray, cfg: CombineConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine ``s`` (n × pixels, C-contiguous), each column sorted ascending.

    The statistics of the whole columns come from one pass of sums; each clipping iteration
    then recomputes them only for the columns whose window changed (a column whose window did
    not change keeps its bounds, so it has converged), which are few.
    """
    n, npix = s.shape
    lo = np.zeros(npix, dtype=np.int64)
    hi = np.full(npix, n, dtype=np.int64)
    median = 0.5 * (s[(n - 1) // 2] + s[n // 2])
    clip = cfg.clip
    need_std = clip.enabled or cfg.method == "average"
    if need_std:
        # Deviations from the median keep the variance free of cancellation.
        d = s - median
        mean_dev = d.sum(axis=0) / n
        var = np.maximum(np.einsum("ij,ij->j", d, d) / n - mean_dev * mean_dev, 0.0)
        del d
        mean, std = median + mean_dev, np.sqrt(var)
    else:
        mean = std = median
    if clip.enabled:
        median, mean, std = median.copy(), mean.copy(), std.copy()
        active: np.ndarray | None = None  # None: every column
        for _ in range(max(int(clip.maxiters), 1)):
            sub = s if active is None else s[:, active]
            sel = slice(None) if active is None else active
            center = median[sel] if clip.cenfunc == "median" else mean[sel]
            new_lo, new_hi = _clip_bounds(
                sub, center - clip.low * std[sel], center + clip.high * std[sel]
            )
            new_lo = np.maximum(lo[sel], new_lo)
            new_hi = np.maximum(np.minimum(hi[sel], new_hi), new_lo)
            changed = (new_lo != lo[sel]) | (new_hi != hi[sel])
            lo[sel], hi[sel] = new_lo, new_hi
            if not changed.any():
                break
            active = np.flatnonzero(changed) if active is None else active[changed]
            m, mu, sd = _window_stats(s[:, active], lo[active], hi[active], sums=need_std)
            median[active], mean[active], std[active] = m, mu, sd
    count = hi - lo
    safe = np.sqrt(np.maximum(count, 1))
    if cfg.method == "median":
        value, error = median, _MAD_TO_STD * _window_mad(s, lo, hi, median) / safe
    else:
        value, error = mean, std / safe
    empty = count == 0
    if empty.any():
        value = np.where(empty, np.nan, value)
        error = np.where(empty, np.nan, error)
    return value, error, count


def _plain_median(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and its ccdproc error of pixel-major ``s`` (pixels × n, rows sorted), no clipping."""
    n = s.shape[1]
    median = 0.5 * (s[:, (n - 1) // 2] + s[:, n // 2])
    dev = np.abs(s - median[:, None])
    dev.sort(axis=1)
    mad = 0.5 * (dev[:, (n - 1) // 2] + dev[:, n // 2])
    return median, _MAD_TO_STD * mad / np.sqrt(n)


def _window_mad(s: np.ndarray, lo: np.ndarray, hi: np.ndarray, median: np.ndarray) -> np.ndarray:
    """Median absolute deviation from ``median`` of each column's kept window."""
    dev = np.abs(s - median).T  # pixel-major, so the sort runs along contiguous rows
    if np.any(lo > 0) or np.any(hi < s.shape[0]):
        idx = np.arange(s.shape[0])
        dev[(idx < lo[:, None]) | (idx >= hi[:, None])] = np.inf
    dev = np.ascontiguousarray(dev)
    dev.sort(axis=1)
    count = hi - lo
    a = np.clip((count - 1) // 2, 0, s.shape[0] - 1)
    b = np.clip(count // 2, 0, s.shape[0] - 1)
    rows = np.arange(dev.shape[0])
    return 0.5 * (dev[rows, a] + dev[rows, b])


def combine_stack(
    stack: np.ndarray, cfg: CombineConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine a ``(n, rows, cols)`` stack along axis 0.

    Parameters
    ----------
    stack
        The frames, any float or integer dtype (computed in float64). NaNs are not allowed:
        frames are already calibrated to finite values.
    cfg
        Method and σ-clipping.

    Returns
    -------
    value, error, count : numpy.ndarray
        The combined ``(rows, cols)`` image (float64); its standard error as ccdproc computes
        it (the std of the kept values over sqrt(count) for ``average``; 1.4826 × their
        median absolute deviation over sqrt(count) for ``median``); the number of values kept.
    """
    n, rows, cols = stack.shape
    value = np.empty(rows * cols)
    error = np.empty(rows * cols)
    count = np.empty(rows * cols, dtype=np.int64)
    _combine_into(np.asarray(stack).reshape(n, -1), cfg, value, error, count)
    return value.reshape(rows, cols), error.reshape(rows, cols), count.reshape(rows, cols)


def _combine_into(
    flat: np.ndarray, cfg: CombineConfig, value: np.ndarray, error: np.ndarray, count: np.ndarray
) -> None:
    """Combine ``flat`` (n × pixels; rows need not be adjacent) into the 1-D outputs given."""
    n, npix = flat.shape
    for p0 in range(0, npix, _CHUNK_PIXELS):
        p1 = min(p0 + _CHUNK_PIXELS, npix)
        # Sort pixel-major (SIMD sort of short contiguous rows), then combine frame-major so
        # the reductions over frames run along long contiguous rows.
        s = np.ascontiguousarray(flat[:, p0:p1].T, dtype=np.float64)
        s.sort(axis=1)
        if cfg.method == "median" and not cfg.clip.enabled:
            value[p0:p1], error[p0:p1] = _plain_median(s)
            count[p0:p1] = n
            continue
        s = np.ascontiguousarray(s.T)
        value[p0:p1], error[p0:p1], count[p0:p1] = _combine_sorted(s, cfg)


#: Largest stack of one band (n frames × rows × cols float64) that :func:`tile_rows_for` picks.
_BAND_BYTES = 64 * 2**20


def tile_rows_for(
    n_frames: int, shape: tuple[int, int], *, budget_bytes: int, workers: int = 1
) -> int:
    """Rows per band so that ``workers`` bands in flight fit in ``budget_bytes``, each band's
    stack at most 64 MB.

    A band in flight holds its stack (``n_frames`` float64 rows), about five float64 rows of
    one frame being read and prepared (the stored pixels, their float64 values, the bias and
    dark rows and the dark-subtraction temporaries), its float32/float32/int16 results and
    their big-endian copy on the way to disk (14 bytes a pixel, 16 counted), and the
    per-chunk temporaries of :func:`combine_stack`. Nothing whole-frame: the results go to
    disk band by band (:func:`combine_tiled` with a ``sink``).
    """
    rows, cols = shape
    workers = max(workers, 1)
    chunk = 8 * (n_frames + 1) * _CHUNK_PIXELS * 8
    per_row = workers * ((n_frames + 5) * cols * 8 + 16 * cols)
    fit = (budget_bytes - workers * chunk) // per_row
    # Taller bands are no faster: past a few tens of MB a stack only costs first-touch page
    # faults (~1 ms per MB on the development VM).
    cap = _BAND_BYTES // (n_frames * cols * 8)
    return int(max(1, min(rows, fit, cap)))


#: Receives each combined band: ``sink(r0, value, error)`` (float32 rows from ``r0``).
BandSink = Callable[[int, np.ndarray, np.ndarray], None]


def combine_tiled(
    loaders: Sequence[Callable[[int, int], np.ndarray]],
    shape: tuple[int, int],
    cfg: CombineConfig,
    *,
    tile_rows: int,
    in_flight: int = 2,
    sink: BandSink | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Combine frames band by band with dask, each loader reading only the rows it is asked.

    Parameters
    ----------
    loaders
        One callable per frame: ``loader(r0, r1)`` returns rows ``[r0, r1)`` of that frame,
        already calibrated (float64, shape ``(r1 - r0, cols)``).
    shape
        ``(rows, cols)`` of every frame.
    cfg
        Combination method and clipping.
    tile_rows
        Band height; see :func:`tile_rows_for`.
    in_flight
        Bands computed at once (the dask workers); results are handed on between batches
        so finished bands do not pile up in memory.
    sink
        When given, each band's value and error go to ``sink(r0, value, error)`` as soon as
        its batch is done, and nothing is returned: the whole master is never in memory.

    Returns
    -------
    value, error, count : numpy.ndarray or None
        Without a ``sink``: as :func:`combine_stack`, value and error as float32, count as
        int16. With one: None.
    """
    import dask

    rows, cols = shape
    bands = [(r0, min(r0 + tile_rows, rows)) for r0 in range(0, rows, tile_rows)]
    log.debug(
        "combining %d frames of %s in %d bands of %d rows",
        len(loaders),
        shape,
        len(bands),
        tile_rows,
    )

    # Stacks are reused from band to band (at most ``in_flight`` exist): a fresh 100 MB array
    # per band costs its page faults again. list.pop/append are atomic, so threads can share it.
    free: list[np.ndarray] = []

    def band(r0: int, r1: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        try:
            buf = free.pop()
        except IndexError:
            buf = np.empty((len(loaders), min(tile_rows, rows) * cols), dtype=np.float64)
        stack = buf[:, : (r1 - r0) * cols]
        for i, load in enumerate(loaders):
            stack[i].reshape(r1 - r0, cols)[...] = load(r0, r1)
        v = np.empty((r1 - r0, cols), dtype=np.float32)
        e = np.empty((r1 - r0, cols), dtype=np.float32)
        c = np.empty((r1 - r0, cols), dtype=np.int16)
        _combine_into(stack, cfg, v.reshape(-1), e.reshape(-1), c.reshape(-1))
        free.append(buf)
        return r0, v, e, c

    if sink is None:
        value = np.empty(shape, dtype=np.float32)
        error = np.empty(shape, dtype=np.float32)
        count = np.empty(shape, dtype=np.int16)

        def keep(r0: int, v: np.ndarray, e: np.ndarray) -> None:
            value[r0 : r0 + v.shape[0]] = v
            error[r0 : r0 + v.shape[0]] = e

        out: BandSink = keep
    else:
        out = sink
    step = max(int(in_flight), 1)
    # Explicit task names: dask would otherwise tokenize (cloudpickle) the closure per task.
    task = dask.delayed(band, name=f"combine-band-{id(band):x}")
    for i in range(0, len(bands), step):
        batch = [task(r0, r1, dask_key_name=f"{task.key}-{r0}") for r0, r1 in bands[i : i + step]]
        for r0, v, e, c in dask.compute(*batch):
            out(r0, v, e)
            if sink is None:
                count[r0 : r0 + v.shape[0]] = c
    if sink is None:
        return value, error, count
    return None
