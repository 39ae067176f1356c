"""Whole-frame statistics with the memory of one band: numpy's exact answers, computed band by band.

A flat is normalised by its median, and the metrics report a master's median, noise and mean
error. At 16k × 16k a frame is 1–2 GB, so ``np.median(frame)`` cannot be afforded; these
functions read the frame as a sequence of bands (a callable that starts a fresh pass each
time) and return *exactly* what numpy returns on the whole frame:

- :func:`exact_median` is a radix selection. Floats map to unsigned integers whose order is
  the floats' order (flip every bit of a negative number, only the sign bit of a positive one).
  A pass histograms the next 16 bits of the keys that share the prefix found so far and picks
  the bin holding the wanted rank; once that bin holds few enough values (``max_candidates``)
  they are collected and partitioned, or, with every bit known, the key is the answer. At most
  ``bits / 16`` passes (2 for float32, 4 for float64) plus one. An even count's two middle
  values are then averaged by ``np.mean`` on the two of them, which is what ``np.median``
  does, in the same dtype.
- :func:`numpy_mean` reproduces ``np.mean(a, dtype=np.float64)`` on a C-contiguous float32
  array: numpy casts through buffers of ``np.getbufsize()`` elements, sums each buffer
  pairwise and adds the buffers' sums in order; so does this, at any band height.

Zeros: -0.0 and +0.0 are different keys; when both sit at the median rank numpy may return
either sign, this returns the one its rank falls on. Frames whose median is exactly zero with
both signs present are the only case where the two could print differently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["exact_median", "middle_values", "numpy_mean", "float_keys", "from_keys"]

Bands = Callable[[], Iterable[np.ndarray]]

_DIGIT = 16


def float_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integer keys of float32/float64 ``values`` that sort as the values do."""
    dtype = np.dtype(values.dtype)
    if dtype == np.float32:
        u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
        top = np.uint32(1 << 31)
    elif dtype == np.float64:
        u = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
        top = np.uint64(1 << 63)
    else:
        raise TypeError(f"float32 or float64 expected, got {dtype}")
    negative = (u & top) != 0
    return np.where(negative, ~u, u | top)


def from_keys(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`float_keys`."""
    keys = np.asarray(keys)
    top = keys.dtype.type(1 << (8 * keys.dtype.itemsize - 1))
    u = np.where((keys & top) != 0, keys & ~top, ~keys)
    return u.view(np.dtype(dtype))


class _Target:
    """One wanted rank: the key prefix found so far and how many keys lie below it."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.prefix = 0
        self.known = 0  # bits of the key fixed by ``prefix``
        self.below = 0
        self.collect = False
        self.key: int | None = None


def _usable(band: np.ndarray, dtype: np.dtype, finite: bool) -> np.ndarray:
    band = np.asarray(band).reshape(-1)
    if band.dtype != dtype:
        band = band.astype(dtype)
    ok = np.isfinite(band) if finite else ~np.isnan(band)
    return band if ok.all() else band[ok]


def exact_median(
    bands: Bands,
    *,
    dtype: type[np.floating] | np.dtype,
    max_candidates: int = 1 << 20,
    finite: bool = True,
) -> float | None:
    """``np.median`` of the finite values of every band, converted to ``dtype``.

    See :func:`middle_values` for the parameters; ``np.median`` averages its one or two
    middle values with ``np.mean``, in ``dtype``, and so does this.
    """
    middle = middle_values(bands, dtype=dtype, max_candidates=max_candidates, finite=finite)
    return None if middle is None else float(np.mean(middle))


def middle_values(
    bands: Bands,
    *,
    dtype: type[np.floating] | np.dtype,
    max_candidates: int = 1 << 20,
    finite: bool = True,
) -> np.ndarray | None:
    """The middle value (odd count) or two middle values (even) of the finite values of
    every band, converted to ``dtype``, in sorted order.

    Parameters
    ----------
    bands
        Called once per pass; each call yields the frame's bands (any shapes) in any order.
        Every call must yield the same values.
    dtype
        float32 or float64: the values are converted to it (as ``np.median(a.astype(dtype))``)
        and the two middle values of an even count are averaged in it.
    max_candidates
        Most keys held at once when the last pass collects them (8 bytes each at most).
    finite
        True: NaN and ±inf are left out. False: only NaN is (±inf sort at the ends).

    Returns
    -------
    numpy.ndarray or None
        One or two values of ``dtype``; None when there is no value.
    """
    dt = np.dtype(dtype)
    bits = 8 * dt.itemsize
    n = 0
    targets: list[_Target] = []
    first = True
    while first or any(t.key is None for t in targets):
        groups: dict[tuple[int, int, bool], list[_Target]] = {}
        for t in targets:
            if t.key is None:
                groups.setdefault((t.prefix, t.known, t.collect), []).append(t)
        if first:
            groups = {(0, 0, False): []}
        hists = {g: np.zeros(1 << _DIGIT, dtype=np.int64) for g in groups if not g[2]}
        picked: dict[tuple[int, int, bool], list[np.ndarray]] = {g: [] for g in groups if g[2]}
        for band in bands():
            keys = float_keys(_usable(band, dt, finite))
            if first:
                n += keys.size
            for g in groups:
                prefix, known, collect = g
                if known:
                    sel = keys[(keys >> (bits - known)) == prefix]
                else:
                    sel = keys
                if collect:
                    picked[g].append(sel.copy())
                else:
                    shift = bits - known - _DIGIT
                    digit = ((sel >> shift) & ((1 << _DIGIT) - 1)).astype(np.intp)
                    hists[g] += np.bincount(digit, minlength=1 << _DIGIT)
        if first:
            first = False
            if n == 0:
                return None
            ranks = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
            targets = [_Target(r) for r in ranks]
            groups = {(0, 0, False): targets}
        for g, members in groups.items():
            if g[2]:
                keys = np.concatenate(picked[g]) if picked[g] else np.empty(0, np.uint64)
                for t in members:
                    k = t.rank - t.below
                    t.key = int(np.partition(keys, k)[k])
                continue
            cum = np.cumsum(hists[g])
            for t in members:
                b = int(np.searchsorted(cum, t.rank - t.below, side="right"))
                t.below += int(cum[b - 1]) if b else 0
                t.prefix = (t.prefix << _DIGIT) | b
                t.known += _DIGIT
                count = int(hists[g][b])
                if t.known == bits:
                    t.key = t.prefix
                elif count <= max_candidates:
                    t.collect = True
    kdtype = np.uint32 if bits == 32 else np.uint64
    return from_keys(np.array([t.key for t in targets], dtype=kdtype), dt)


def numpy_mean(bands: Iterable[np.ndarray], count: int) -> float:
    """``np.mean(a, dtype=np.float64)`` of a C-contiguous float32 array ``a`` given as bands.

    The bands are ``a``'s rows in order (any heights); ``count`` is ``a.size``. numpy's sum
    runs over buffers of ``np.getbufsize()`` elements of the flattened array: each is summed
    pairwise, and the buffer sums are added one after the other. The bands are cut into the
    same buffers here, so the result is bit-identical (tested).
    """
    size = np.getbufsize()
    total = 0.0
    carry = np.empty(0, dtype=np.float64)
    for band in bands:
        flat = np.asarray(band).reshape(-1)
        start = 0
        if carry.size:
            start = min(size - carry.size, flat.size)
            carry = np.concatenate([carry, flat[:start].astype(np.float64)])
            if carry.size < size:
                continue
            total += float(np.add.reduce(carry))
            carry = np.empty(0, dtype=np.float64)
        whole = (flat.size - start) // size * size
        if whole:
            chunk = flat[start : start + whole].astype(np.float64).reshape(-1, size)
            for s in np.add.reduce(chunk, axis=1):  # each row pairwise, as numpy's buffers
                total += float(s)
        carry = flat[start + whole :].astype(np.float64)
    if carry.size:
        total += float(np.add.reduce(carry))
    return total / count
